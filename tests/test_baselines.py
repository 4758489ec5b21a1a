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
