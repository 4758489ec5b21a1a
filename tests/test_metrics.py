"Accuracy, exact match and bootstrap intervals."
import math
import random

import pytest

from knife_repro.metrics import accuracy, bootstrap_ci, exact_match, mean_std, normalize_answer


def test_accuracy_and_exact_match():
    assert accuracy([0, 1, 2, None], [0, 1, 1, 1])["accuracy"] == 0.5
    assert exact_match(["An apple!", "pear"], ["apple", "Pears"])["exact_match"] == 0.5
    assert normalize_answer("The  Eiffel-Tower.") == "eiffeltower"
    with pytest.raises(ValueError):
        accuracy([1, 2], [1])


def test_bootstrap_interval_covers_truth_at_nominal_rate():
    # 95% intervals over Bernoulli(0.7) samples of 200 should cover 0.7 about 95% of the time
    rng, hits = random.Random(0), 0
    for t in range(200):
        xs = [int(rng.random() < 0.7) for _ in range(200)]
        lo, hi = bootstrap_ci(xs, n_boot=300, seed=t)
        hits += lo <= 0.7 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_mean_std():
    assert mean_std([1.0]) == (1.0, 0.0)
    m, s = mean_std([1.0, 3.0])
    assert m == 2.0 and abs(s - 2 ** 0.5) < 1e-12


def test_paired_test_by_hand():
    from knife_repro.metrics import paired_test
    t = paired_test([1, 1, 1, 0], [0, 0, 1, 0])            # two discordant pairs, both for A
    assert (t["only_a"], t["only_b"]) == (2, 0) and math.isclose(t["diff"], 0.5)
    assert math.isclose(t["p_mcnemar"], 0.5)                 # 2 * 0.5**2
    t = paired_test([1] * 20, [0] * 20)                      # A always right, B never
    assert math.isclose(t["p_mcnemar"], 2 * 0.5 ** 20) and t["diff_ci_low"] == t["diff_ci_high"] == 1.0
    t = paired_test([[1, 0, 1, 1], [0, 0, 1, 1]], [[1, 1, 0, 1], [0, 1, 1, 1]])   # seeds x questions
    assert (t["only_a"], t["only_b"], t["n_seeds"], t["n_questions"]) == (1, 2, 2, 4)
    assert math.isclose(t["diff"], (5 - 6) / 8) and math.isclose(t["p_mcnemar"], 1.0)   # 1 vs 2: two-sided p = 1
    with pytest.raises(ValueError, match="shapes"):
        paired_test([1, 0], [1, 0, 1])
