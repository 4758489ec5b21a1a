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


def _coin(n, seed=0):
    import random
    rng = random.Random(seed)
    return [{"id": str(i), "question": f"Question {rng.randrange(10**6)}?", "choices": ["heads", "tails"],
             "answer": rng.randrange(2)} for i in range(n)]


def test_rationale_faithfulness_probes_the_forced_rationale():
    from knife_repro.core import RunConfig
    from knife_repro.faithfulness import perturb_text, rationale_faithfulness
    from knife_repro.models import load_seq2seq
    _, tok = load_seq2seq("tiny-t5")
    cfg = RunConfig(method="x", dataset="toy", seed=3, scale="smoke", max_source_len=32)
    exs = _coin(12)
    outputs = lambda es: ([f"the coin shows {e['choices'][e['answer']]}" for e in es], [e["answer"] for e in es])
    seen = []
    def reads(es, rats):
        seen.append(list(rats))
        return [0 if "heads" in r else 1 if "tails" in r else 1 - e["answer"] for e, r in zip(es, rats)]
    m, notes = rationale_faithfulness(cfg, tok, exs, exs, outputs, reads, n_boot=20, sim_epochs=1, perturb_fraction=1.0)
    assert m["own_rationale_accuracy"] == 1.0 and m["perturbed_accuracy"] == 0.0
    assert seen[1] == [perturb_text(tok, r, 1.0, 3 * 100003 + i) for i, r in enumerate(seen[0])]   # seeded per question
    assert {"las", "las_ci_low", "las_ci_high", "las_n"} <= set(m) and m["las_n"] == 12
    assert m["las_train_questions"] == 12                  # smoke: las_train=64 caps nothing here
    m5, _ = rationale_faithfulness(cfg, tok, exs, exs, outputs, None, n_boot=20, sim_epochs=1, las_train=5)
    assert m5["las_train_questions"] == 5 and m5["las_n"] == 12   # the simulator's subset; LAS still on every test row
    m2, notes2 = rationale_faithfulness(cfg, tok, exs, exs, outputs, None, n_boot=20, sim_epochs=1)
    assert "perturbed_accuracy" not in m2 and "las" in m2 and "no perturbed-rationale accuracy" in notes2[-1]
    none = lambda es: (["x"] * len(es), [None] * len(es))
    m3, notes3 = rationale_faithfulness(cfg, tok, exs, exs, none, None, n_boot=20, sim_epochs=1)
    assert "las" not in m3 and any("LAS not computed" in n for n in notes3)


def test_cpu_simulator_trains_on_200_questions():
    "One LAS setting at cpu scale for every method: the pretrained budget model, one epoch, 200 training questions."
    from knife_repro.core import CPU_BUDGET
    from knife_repro.faithfulness import FAITHFULNESS
    c = FAITHFULNESS["cpu"]
    assert (c["simulator"], c["sim_epochs"], c["sim_lr"], c["las_train"]) == (CPU_BUDGET["model"], 1, CPU_BUDGET["lr"], 200)



def test_per_example_keeps_what_a_paired_las_needs(monkeypatch):
    "`per_example` gets, per test question, y_hat, the three simulator choices (None where y_hat is None) and the forced preds."
    import knife_repro.faithfulness as fa
    from knife_repro.core import RunConfig
    from knife_repro.models import load_seq2seq
    _, tok = load_seq2seq("tiny-t5")
    cfg = RunConfig(method="x", dataset="toy", seed=0, scale="smoke", max_source_len=32)
    exs = _coin(4)
    preds = [0, None, 1, 1]
    outputs = lambda es: (["r"] * len(es), [preds[int(e["id"])] for e in es])
    forced = lambda es, rats: [1] * len(es)
    # a stand-in simulator: view x picks 0, e picks 1, xe picks y_hat
    monkeypatch.setattr(fa, "train_simulator", lambda *a, **k: (None, None, None))
    monkeypatch.setattr(fa, "simulate", lambda sim, tok, rows, view, n: [0 if view == "x" else 1 if view == "e" else
                                                                        r["y_hat"] for r in rows])
    per = []
    m, _ = fa.rationale_faithfulness(cfg, tok, exs, exs, outputs, forced, per_example=per, n_boot=10)
    assert [p["y_hat"] for p in per] == preds and [p["own_pred"] for p in per] == [1] * 4
    assert [(p["sim_x"], p["sim_e"], p["sim_xe"]) for p in per] == [(0, 1, 0), (None, None, None), (0, 1, 1), (0, 1, 1)]
    # by hand on the 3 valid rows: leaking (sim_e == y_hat) rows 2, 3 gain 1 - 0 each; row 0 does not leak, gains 1 - 1 = 0
    assert m["las"] == pytest.approx(50) and m["las_n"] == 3
    m2, _ = fa.rationale_faithfulness(cfg, tok, exs, exs, outputs, forced, n_boot=10)   # without it: the same metrics
    assert m2 == m


def test_paired_las_sign_and_shape():
    from knife_repro.faithfulness import paired_las
    y, sx, se, sxe = [0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0], [0, 1, 0, 0, 0, 1]
    a = [list(zip(y, sx, se, sxe))] * 2                 # LAS 37.5 (test_las_hand_computed), two seeds
    b = [list(zip(y, sx, se, sx))] * 2                  # sim(x,e) = sim(x): LAS 0
    t = paired_las(a, b, n_boot=200)
    assert (t["n_questions"], t["n_seeds"]) == (6, 2) and t["diff"] == pytest.approx(37.5)
    assert t["diff_ci_low"] <= 37.5 <= t["diff_ci_high"] and t["las_b"] == 0
    r = paired_las(b, a, n_boot=50)
    assert r["diff"] == pytest.approx(-37.5) and r["las_a"] == 0
    bad = [[(None, None, None, None)] + list(zip(y, sx, se, sxe))[1:]]     # question 0 invalid for A: left out
    assert paired_las(bad, [list(zip(y, sx, se, sx))], n_boot=10)["las_a"] == pytest.approx(
        las(y[1:], sx[1:], se[1:], sxe[1:], n_boot=10)["las"])
    with pytest.raises(ValueError, match="shapes differ"):
        paired_las(a, b[:1])

def test_iro_forced_own_rationale_is_the_headline_scoring():
    "For FT I→RO, forcing the student's own rationale reproduces the headline (scored) prediction exactly."
    from knife_repro.baselines import baseline_faithfulness, evaluate_qa
    from knife_repro.core import RunConfig
    from knife_repro.models import load_seq2seq
    model, tok = load_seq2seq("tiny-t5", seed=0)
    exs = _coin(10, seed=1)
    for e in exs: e["rationale"] = "a coin"
    cfg = RunConfig(method="ft_iro", dataset="toy", seed=0, scale="smoke", max_target_len=8, max_source_len=32)
    m, _ = baseline_faithfulness(model, tok, cfg, exs, exs)
    head = evaluate_qa(model, tok, exs, "ft_iro", "score", max_new_tokens=8, max_source_len=32)
    assert m["own_rationale_accuracy"] == head["accuracy"] and "perturbed_accuracy" in m
    m2, _ = baseline_faithfulness(model, tok, cfg.replace(method="ft_ior"), exs, exs)
    assert "perturbed_accuracy" not in m2
    with pytest.raises(ValueError, match="writes no rationale"):
        baseline_faithfulness(model, tok, cfg.replace(method="ft_io"), exs, exs)


# --- decoder-only simulators --------------------------------------------------------------

def test_causal_simulator_rows_put_labels_on_the_target_only():
    from knife_repro.faithfulness import VIEWS, encode_simulator
    from knife_repro.models import load_causal
    _, tok = load_causal("tiny-gpt2")
    rows = [{"question": "Is 41 bigger than 17?", "rationale": "41 is more than 17.", "choices": ["yes", "no"], "y_hat": 0},
            {"question": "Q?", "rationale": "E.", "choices": ["red", "green", "blue"], "y_hat": 2}]
    data = encode_simulator(tok, rows, max_source_len=512, max_target_len=16, causal=True)
    assert len(data) == len(rows) * len(VIEWS)
    sep = tok("\nAnswer:", add_special_tokens=False).input_ids
    for i, d in enumerate(data):
        r, v = rows[i // 3], VIEWS[i % 3]
        prompt = tok(simulator_input(r["question"], r["rationale"], r["choices"], v)).input_ids + sep
        target = tok(" " + r["choices"][r["y_hat"]], add_special_tokens=False).input_ids + [tok.eos_token_id]
        assert d["input_ids"] == prompt + target and d["labels"] == [-100] * len(prompt) + target
        assert d["attention_mask"] == [1] * len(d["input_ids"])
    cut = encode_simulator(tok, rows[:1], max_source_len=len(sep) + 3, max_target_len=16, causal=True)
    for d, v in zip(cut, VIEWS):                          # a long input is cut before the separator, never the target
        x = tok(simulator_input(rows[0]["question"], rows[0]["rationale"], rows[0]["choices"], v)).input_ids
        assert d["input_ids"][:len(sep) + 3] == x[:3] + sep and d["labels"].count(-100) == len(sep) + 3
        assert d["labels"][-1] == tok.eos_token_id


def test_causal_simulator_trains_and_simulates():
    from knife_repro.qa import is_causal
    from knife_repro.core import RunConfig
    from knife_repro.faithfulness import las_eval, simulate, train_simulator
    cfg = RunConfig(method="x", dataset="toy", seed=0, scale="smoke", max_source_len=48, max_target_len=8)
    rows = [{**e, "rationale": f"the coin shows {e['choices'][e['answer']]}", "y_hat": e["answer"]} for e in _coin(24)]
    sim, tok, res = train_simulator(rows + [{**rows[0], "y_hat": None}], cfg, "tiny-gpt2", epochs=2, batch_size=8)
    assert is_causal(sim) and res.state.step == 2 * 9       # 72 sequences (3 views x 24 rows; the None row dropped)
    for v in ("x", "e", "xe"):
        p = simulate(sim, tok, rows, v, cfg.max_source_len)
        assert len(p) == len(rows) and set(p) <= {0, 1}
    out = las_eval(rows, rows + [{**rows[0], "y_hat": None}], cfg, "tiny-gpt2", n_boot=20, epochs=1)
    assert out["n"] == 24 and out["n_skipped"] == 1 and 0 <= out["sim_xe_accuracy"] <= 1
    assert -100 <= out["las"] <= 100
