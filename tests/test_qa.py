"The QA layer: answer parsing, choice scoring (seq2seq and the KV-shared causal path), generation, LM loss, subsampling."
import pytest
import torch

from knife_repro.baselines import encode_examples
from knife_repro.models import load_causal, load_seq2seq
from knife_repro.qa import causal_prompt_ids, generate, lm_loss, parse_answer, score_choices, subsample

CEX = {"question": "Is 41 bigger than 17?", "choices": ["yes", "no"], "answer": 0, "rationale": "41 is more than 17."}


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


def test_subsample_is_seeded_and_respects_fraction():
    data = list(range(100))
    a, b = subsample(data, 0, 0.1, seed=1), subsample(data, 0, 0.1, seed=1)
    assert a == b and len(a) == 10 and subsample(data, 0, 0.1, seed=2) != a
    assert len(subsample(data, 5, 0.5, seed=1)) == 5


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

