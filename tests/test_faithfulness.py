"Faithfulness metrics: LAS on hand-computed cases, bootstrap, perturbation."
import math

import pytest

from knife_repro.faithfulness import las, perturb_ids, simulator_input


def test_las_hand_computed():
    # leaking (sim_e == y): examples 0, 1 -> deltas (1-0, 1-1) -> 0.5
    # non-leaking: examples 2..5 -> deltas (1-0, 0-1, 1-1, 1-0) -> 0.25 ; LAS = (0.5 + 0.25) / 2
    r = las([0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0], [0, 1, 0, 0, 0, 1], n_boot=100)
    assert r["las"] == pytest.approx(37.5) and r["las_leaking"] == pytest.approx(50)
    assert r["las_nonleaking"] == pytest.approx(25) and r["leak_rate"] == pytest.approx(1 / 3)
    assert r["las_ci_low"] <= r["las"] <= r["las_ci_high"]


def test_las_is_macro_not_micro():
    # 1 leaking example with delta 1, 3 non-leaking with delta 0: macro 50, micro would be 25
    r = las([0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0], n_boot=10)
    assert r["las"] == pytest.approx(50)


def test_las_one_empty_group_and_errors():
    r = las([0, 1], [1, 1], [0, 1], [0, 1], n_boot=10)   # everything leaks
    assert r["las"] == pytest.approx(50) and math.isnan(r["las_nonleaking"])
    with pytest.raises(ValueError, match="lengths"):
        las([0, 1], [0], [0, 1], [0, 1])


def test_las_bootstrap_is_seeded_and_narrows():
    y = [i % 2 for i in range(200)]
    sx = [0] * 200
    se = [(i // 2) % 2 for i in range(200)]
    sxe = y
    a, b = las(y, sx, se, sxe, n_boot=300, seed=1), las(y, sx, se, sxe, n_boot=300, seed=1)
    assert a == b and a["las_ci_high"] - a["las_ci_low"] > 0
    small = las(y[:20], sx[:20], se[:20], sxe[:20], n_boot=300, seed=1)
    assert small["las_ci_high"] - small["las_ci_low"] > a["las_ci_high"] - a["las_ci_low"]


def test_perturb_replaces_exactly_half_with_different_ids():
    ids = list(range(10, 41))
    p = perturb_ids(ids, 0.5, vocab_size=50, seed=3, exclude=[0, 1, 2])
    assert sum(x != y for x, y in zip(ids, p)) == round(0.5 * 31)
    assert not {0, 1, 2} & set(p) and len(p) == len(ids)
    assert perturb_ids(ids, 1.0, 50, seed=0) != ids and all(x != y for x, y in zip(ids, perturb_ids(ids, 1.0, 50)))
    with pytest.raises(ValueError, match="fraction"):
        perturb_ids(ids, 1.5)


def test_simulator_views():
    assert simulator_input("Q?", "E.", ["yes", "no"], "x") == "question: Q?"
    assert simulator_input("Q?", "E.", ["yes", "no"], "e") == "explanation: E."
    assert simulator_input("Q?", "E.", ["a", "b", "c"], "xe") == "question: Q? explanation: E. choices: (A) a (B) b (C) c"
    with pytest.raises(ValueError, match="view"):
        simulator_input("Q", "E", ["a"], "y")
