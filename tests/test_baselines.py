"Baseline formats, answer parsing and choice scoring."
import pytest
import torch

from knife_repro.baselines import (BASELINES, format_input, format_target, parse_answer, predict, score_choices,
                                   subsample)
from knife_repro.models import load_seq2seq

EX = {"id": "1", "question": "Is 41 bigger than 17?", "choices": ["yes", "no"], "answer": 0,
      "rationale": "41 is more than 17.", "llm_rationales": ["Forty-one exceeds seventeen."], "context": ""}


def test_only_the_oracle_sees_the_rationale_in_its_input():
    for m in BASELINES:
        assert ("41 is more than 17." in format_input(EX, m)) == (m == "ft_ir_o")
    assert "Forty-one" in format_input(EX, "ft_ir_o", "llm")
    assert format_target(EX, "ft_iro").endswith("So the answer is yes.")
    assert format_target(EX, "ft_ior").startswith("yes. Explanation:")


@pytest.mark.parametrize("text,method,want", [
    ("x. So the answer is no.", "ft_iro", 1), ("So the answer is yes. So the answer is no", "ft_iro", 1),
    ("no answer here", "ft_iro", None), ("Yes. Explanation: so", "ft_ior", 0), ("(b)", "ft_io", 1),
    ("perhaps", "ft_io", None), ("", "ft_io", None)])
def test_parse_answer(text, method, want):
    assert parse_answer(text, ["yes", "no"], method) == want


def test_scores_equal_token_logprob_sums():
    m, tok = load_seq2seq("tiny-t5", seed=3)
    x = "question: Is 41 bigger than 17?"
    s = score_choices(m, tok, [x, x], [["yes", "no way"], ["no"]], prefixes=["because", ""], eos=True)
    with torch.no_grad():
        enc = tok([x], return_tensors="pt")
        pre = tok("because", add_special_tokens=False).input_ids
        ans = tok(" no way", add_special_tokens=False).input_ids + [tok.eos_token_id]
        lab = torch.tensor([pre + ans])
        lp = torch.log_softmax(m(**enc, labels=lab).logits, -1)[0]
        want = sum(lp[len(pre) + i, t].item() for i, t in enumerate(ans))
    assert abs(s[0][1] - want) < 1e-4 and len(s[1]) == 1


def test_predict_modes_agree_on_shape():
    m, tok = load_seq2seq("tiny-t5", seed=0)
    out = predict(m, tok, [EX, EX], "ft_iro", "score", max_new_tokens=8)
    assert len(out["preds"]) == 2 and all(p in (0, 1) for p in out["preds"]) and len(out["texts"]) == 2
    with pytest.raises(ValueError, match="mode"):
        predict(m, tok, [EX], "ft_io", "vote")


def test_subsample_is_seeded_and_respects_fraction():
    data = list(range(100))
    a, b = subsample(data, 0, 0.1, seed=1), subsample(data, 0, 0.1, seed=1)
    assert a == b and len(a) == 10 and subsample(data, 0, 0.1, seed=2) != a
    assert len(subsample(data, 5, 0.5, seed=1)) == 5


# --- decoder-only students ------------------------------------------------------------------

from knife_repro.baselines import (CAUSAL_SEP, causal_prompt_ids, encode_examples, generate, is_causal, lm_loss,
                                   run_baseline)
from knife_repro.models import load_causal

CEX = {"question": "Is 41 bigger than 17?", "choices": ["yes", "no"], "answer": 0, "rationale": "41 is more than 17."}


def _tokwise_logprob(model, ids: list[int], start: int) -> float:
    "Sum over t >= start of log P(ids[t] | ids[:t]), one unpadded forward per prefix: the definition, no batching."
    tot = 0.0
    with torch.no_grad():
        for t in range(start, len(ids)):
            logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
            tot += torch.log_softmax(logits.float(), -1)[ids[t]].item()
    return tot


@pytest.mark.parametrize("length_norm", [False, True])
def test_causal_scores_are_choice_token_logprobs_whatever_the_batch(length_norm):
    m, tok = load_causal("tiny-gpt2", seed=0)
    inputs = ["question: Is 41 bigger than 17?", "question: a much longer question with many more words in it?"]
    choices = [["yes", "no"], ["maybe so", "no"]]
    got = score_choices(m, tok, inputs, choices, length_norm=length_norm, batch_size=3)   # batches mix both inputs
    for i, (x, cs) in enumerate(zip(inputs, choices)):
        p = causal_prompt_ids(tok, x)
        for k, c in enumerate(cs):
            ci = tok(" " + c, add_special_tokens=False).input_ids + [tok.eos_token_id]
            want = _tokwise_logprob(m, p + ci, len(p))
            assert got[i][k] == pytest.approx(want / (len(ci) if length_norm else 1), abs=1e-4)


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


def test_causal_lm_loss_is_mean_target_token_nll():
    m, tok = load_causal("tiny-gpt2", seed=1)
    (row,) = encode_examples(tok, [CEX], "ft_io", causal=True)
    n_prompt = row["labels"].count(-100)
    batch = {k: torch.tensor([v]) for k, v in row.items()}
    loss, _ = lm_loss({"model": m}, batch)
    want = -_tokwise_logprob(m, row["input_ids"], n_prompt) / (len(row["labels"]) - n_prompt)
    assert loss.item() == pytest.approx(want, abs=1e-4)


def test_causal_generation_is_padding_invariant_and_returns_new_text_only():
    m, tok = load_causal("tiny-gpt2", seed=0)
    xs = ["question: short?", "question: a much much longer question than the first one?"]
    batched = generate(m, tok, xs, max_new_tokens=6, batch_size=2)
    alone = [generate(m, tok, [x], max_new_tokens=6)[0] for x in xs]
    assert batched == alone
    assert not any("question" in t for t in batched)


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


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_token_id_prompts_and_sampling(kind):
    "Text and its token ids give the same generations and scores; sampling kwargs reach `generate` (n per input)."
    m, tok = load_seq2seq("tiny-t5", seed=0) if kind == "seq2seq" else load_causal("tiny-gpt2", seed=0)
    xs = ["question: short?", "question: a longer question than the first one?"]
    ids = [causal_prompt_ids(tok, x) if kind == "causal" else tok(x).input_ids for x in xs]
    assert generate(m, tok, ids, max_new_tokens=4) == generate(m, tok, xs, max_new_tokens=4)
    assert score_choices(m, tok, ids, [["yes", "no"]] * 2) == score_choices(m, tok, xs, [["yes", "no"]] * 2)
    torch.manual_seed(0)
    s = generate(m, tok, ids, max_new_tokens=4, do_sample=True, top_k=50, num_return_sequences=3)
    assert len(s) == 6


def test_baseline_trains_the_pretrained_causal_student(tmp_path):
    "FT I→O on smollm2-135m end to end (one step, a few examples): the pipeline, not a number."
    from knife_repro.core import RunConfig
    cfg = RunConfig(method="ft_io", dataset="openbookqa", model="smollm2-135m", scale="smoke", epochs=1, batch_size=4,
                    lr=1e-5, max_train_samples=4, max_eval_samples=4, max_source_len=96, max_target_len=16,
                    output_dir=str(tmp_path))
    rec = run_baseline(cfg)
    assert rec["metrics"]["n"] == 4 and rec["timings"]["optimizer_steps"] == 1
    assert rec["metrics"]["invalid_generate"] < 1      # the pretrained model writes answers that parse


def test_shared_context_scoring_matches_plain_forward_on_the_pretrained_lm(smollm2):
    "Llama/SmolLM2 path: the KV-cache-shared scores equal one unpadded forward pass per (prompt, choice) row."
    m, tok = smollm2
    inputs = ["question: Which is frozen water?", "question: What do bees make? Think of the hive and the flowers."]
    choices = [["steam", "ice", "liquid water"], ["honey", "glass"]]
    got = score_choices(m, tok, inputs, choices, prefixes=["It is", "Bees make"], eos=False, batch_size=3)
    for i, (x, cs) in enumerate(zip(inputs, choices)):
        ctx = causal_prompt_ids(tok, x) + tok(" " + ["It is", "Bees make"][i], add_special_tokens=False).input_ids
        for k, c in enumerate(cs):
            ci = tok(" " + c, add_special_tokens=False).input_ids
            with torch.no_grad():
                lp = torch.log_softmax(m(input_ids=torch.tensor([ctx + ci])).logits[0].float(), -1)
            want = sum(lp[len(ctx) - 1 + t, ci[t]].item() for t in range(len(ci)))
            assert got[i][k] == pytest.approx(want, abs=2e-3), (i, k)
