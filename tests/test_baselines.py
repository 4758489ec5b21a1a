"Baseline formats, prediction, encoding and runs (the QA layer they stand on: test_qa.py)."
import pytest

from knife_repro.baselines import BASELINES, format_input, format_target, predict
from knife_repro.models import load_seq2seq

EX = {"id": "1", "question": "Is 41 bigger than 17?", "choices": ["yes", "no"], "answer": 0,
      "rationale": "41 is more than 17.", "llm_rationales": ["Forty-one exceeds seventeen."], "context": ""}


def test_only_the_oracle_sees_the_rationale_in_its_input():
    for m in BASELINES:
        assert ("41 is more than 17." in format_input(EX, m)) == (m == "ft_ir_o")
    assert "Forty-one" in format_input(EX, "ft_ir_o", "llm")
    assert format_target(EX, "ft_iro").endswith("So the answer is yes.")
    assert format_target(EX, "ft_ior").startswith("yes. Explanation:")


def test_predict_modes_agree_on_shape():
    m, tok = load_seq2seq("tiny-t5", seed=0)
    out = predict(m, tok, [EX, EX], "ft_iro", "score", max_new_tokens=8)
    assert len(out["preds"]) == 2 and all(p in (0, 1) for p in out["preds"]) and len(out["texts"]) == 2
    with pytest.raises(ValueError, match="mode"):
        predict(m, tok, [EX], "ft_io", "vote")


# --- decoder-only students ------------------------------------------------------------------

from knife_repro.baselines import encode_examples, run_baseline
from knife_repro.models import load_causal
from knife_repro.qa import CAUSAL_SEP, is_causal

CEX = {"question": "Is 41 bigger than 17?", "choices": ["yes", "no"], "answer": 0, "rationale": "41 is more than 17."}


def test_causal_encoding_puts_labels_on_the_target_only():
    _, tok = load_causal("tiny-gpt2")
    (row,) = encode_examples(tok, [CEX], "ft_iro", causal=True, max_source_len=512, max_target_len=64)
    prompt = tok(format_input(CEX, "ft_iro")).input_ids + tok(CAUSAL_SEP, add_special_tokens=False).input_ids
    target = tok(" " + format_target(CEX, "ft_iro"), add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert row["input_ids"] == prompt + target and row["labels"] == [-100] * len(prompt) + target
    assert tok.decode(target, skip_special_tokens=True) == " 41 is more than 17. So the answer is yes."
    (cut,) = encode_examples(tok, [CEX], "ft_iro", causal=True, max_source_len=8, max_target_len=5)
    n_sep = len(tok(CAUSAL_SEP, add_special_tokens=False).input_ids)
    assert cut["input_ids"][8 - n_sep:8] == prompt[-n_sep:]           # the separator survives the cut
    assert cut["labels"][-1] == tok.eos_token_id and sum(l != -100 for l in cut["labels"]) == 5


def test_baseline_runs_with_a_causal_student(tmp_path):
    from knife_repro.core import RunConfig
    cfg = RunConfig(method="ft_iro", dataset="toy", model="tiny-gpt2", scale="smoke", epochs=1, batch_size=16,
                    max_train_samples=32, max_eval_samples=8, max_target_len=24, output_dir=str(tmp_path),
                    flags={"length_norm": True})
    rec = run_baseline(cfg)
    assert rec["metrics"]["n"] == 8 and 0 <= rec["metrics"]["accuracy"] <= 1
    assert rec["history"] and all(h.get("loss", 0) == h.get("loss", 0) for h in rec["history"])   # finite losses


def test_pretrained_causal_student_beats_chance_zero_shot(smollm2):
    "SmolLM2 reads the kit's prompt: 'Answer:' then the right one of two obvious answers, by log-likelihood."
    m, tok = smollm2
    assert is_causal(m)
    qs = [{"question": "What color is the clear daytime sky?", "choices": ["green", "blue"], "answer": 1},
          {"question": "How many legs does a dog have?", "choices": ["four", "nine"], "answer": 0},
          {"question": "Which is frozen water?", "choices": ["steam", "ice"], "answer": 1},
          {"question": "What do bees make?", "choices": ["honey", "glass"], "answer": 0}]
    out = predict(m, tok, qs, "ft_io", "score", length_norm=True)
    assert out["preds"] == [e["answer"] for e in qs]


def test_baseline_trains_the_pretrained_causal_student(tmp_path):
    "FT I→O on smollm2-135m end to end (one step, a few examples): the pipeline, not a number."
    from knife_repro.core import RunConfig
    cfg = RunConfig(method="ft_io", dataset="openbookqa", model="smollm2-135m", scale="smoke", epochs=1, batch_size=4,
                    lr=1e-5, max_train_samples=4, max_eval_samples=4, max_source_len=96, max_target_len=16,
                    output_dir=str(tmp_path))
    rec = run_baseline(cfg)
    assert rec["metrics"]["n"] == 4 and rec["timings"]["optimizer_steps"] == 1
    assert rec["metrics"]["invalid_generate"] < 1      # the pretrained model writes answers that parse

def test_generation_length_is_the_longest_training_target_plus_margin():
    from knife_repro.baselines import generation_length
    rows = [{"labels": [-100, -100, 5, 6]}, {"labels": [-100, 7, 8, 9]}, {"labels": [1]}]   # targets 2, 3, 1 tokens
    assert generation_length(rows, cap=64) == 3 + 8
    assert generation_length(rows, cap=10) == 10
    assert generation_length(rows, cap=64, margin=0) == 3


def test_baseline_records_its_inference_tokens(tmp_path):
    "Scoring (the headline) reads every option; only I→RO generates first: its rationale, re-encoded from the record."
    from knife_repro.core import RunConfig
    from knife_repro.models import load_causal
    _, tok = load_causal("tiny-gpt2", seed=0)
    recs = {}
    for m in ("ft_io", "ft_iro"):
        cfg = RunConfig(method=m, dataset="toy", model="tiny-gpt2", scale="smoke", epochs=1, batch_size=16,
                        max_train_samples=16, max_eval_samples=6, max_target_len=24, output_dir=str(tmp_path))
        recs[m] = run_baseline(cfg)["metrics"], run_baseline(cfg)["per_example"]
    (io, _), (iro, ex) = recs["ft_io"], recs["ft_iro"]
    assert io["gen_tokens_per_question"] == 0.0
    want = sum(len(tok(e["generation"], add_special_tokens=False).input_ids) for e in ex) / len(ex)
    assert iro["gen_tokens_per_question"] == pytest.approx(want) and want > 0
    assert io["scored_tokens_per_question"] == iro["scored_tokens_per_question"] > 0   # the same questions and options
