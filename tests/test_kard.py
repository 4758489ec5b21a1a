"KARD: prompt identity between training and inference, knowledge truncation, voting, the reranker's MaxSim and loss."
import pytest
import torch

from knife_repro import kard
from knife_repro.core import RunConfig
from knife_repro.models import load_seq2seq
from knife_repro.reranker import Reranker, check_temperatures, rerank_loss, temperatures
from knife_repro.retrieval import BM25Index

DOCS = ["Hamsters are small rodents that weigh about 30 grams.", "A teacup holds about 200 ml of tea.",
        "Paris is the capital of France.", "Rodents have teeth that grow all their life."]
EX = {"id": "q1", "question": "Can a hamster fit in a teacup?", "choices": ["yes", "no"], "answer": 0,
      "rationale": "", "llm_rationales": [], "context": ""}


@pytest.fixture(scope="module")
def student():
    return load_seq2seq("tiny-t5", seed=0)


@pytest.mark.parametrize("method", kard.METHODS)
def test_same_prompt_at_training_and_inference(student, method, monkeypatch):
    model, tok = student
    ix = BM25Index.build(DOCS, progress=False)
    rationale = "Hamsters are small rodents and a teacup holds 200 ml."
    rows = kard.training_examples([EX], {"q1": [rationale]}, method, "strategyqa", ix, k_train=1)
    train_ids = kard.encode_input(tok, rows[0]["ex"], method, "strategyqa", rows[0]["passages"], 48)
    if method in kard.KNOWLEDGE_METHODS:
        assert rows[0]["passages"] == [ix.texts[ix.search([rationale], 1, progress=False)[0][0][0]]]
    seen = {}
    def fake_generate(input_ids, attention_mask, **kw):
        seen["ids"] = input_ids[0][attention_mask[0].bool()].tolist()
        return torch.tensor([[0] + tok("Answer: A", add_special_tokens=False).input_ids])
    monkeypatch.setattr(model, "generate", fake_generate)
    out = kard.predict(model, tok, [EX], method, "strategyqa", [rows[0]["passages"]], max_source_len=48)
    assert seen["ids"] == train_ids                       # the student sees at test time what it was trained on
    assert out["preds"] == [0]
    assert tok.decode(train_ids, skip_special_tokens=True).rstrip().endswith(
        "Answer:" if method == "kard_ft" else "Explanation:")


def test_only_knowledge_is_truncated(student):
    _, tok = student
    long = ["rodent " * 500]
    ids = kard.encode_input(tok, EX, "kard_bm25", "strategyqa", long, max_len=80)
    short = kard.encode_input(tok, EX, "kard_bm25", "strategyqa", [], max_len=80)
    assert len(ids) == 80
    head_tail = kard.encode_input(tok, EX, "kard_bm25", "strategyqa", [], max_len=10_000)
    assert short == head_tail                               # nothing cut when it fits
    head, _, tail = (tok(p, add_special_tokens=False).input_ids for p in kard.prompt_parts(EX, "kard_bm25", "strategyqa"))
    assert ids[:len(head)] == head                          # instruction + question intact
    assert ids[-len(tail) - 1:] == short[-len(tail) - 1:]   # the cue (and </s>) intact
    assert set(ids[len(head):-len(tail) - 1]) <= set(tok(" " + long[0], add_special_tokens=False).input_ids)


def test_targets_parse_and_vote():
    assert kard.target_text(EX, "kard_rd", "Small. ") == "Small.\nAnswer: A"
    assert kard.target_text(EX, "kard_ft") == "Answer: A"
    assert kard.parse_letter("x\nAnswer: B", 2) == 1
    assert kard.parse_letter("Answer: A then Answer: B", 2) == 1
    assert kard.parse_letter("Answer: D", 2) is None and kard.parse_letter("no letter here", 4) is None
    assert kard.vote(["Answer: A", "Answer: B", "Answer: B", "junk"], 2) == 1
    assert kard.vote(["junk", "more junk"], 2) is None


def test_bad_input_named():
    with pytest.raises(ValueError, match="method='kard_x'"):
        kard.prompt_parts(EX, "kard_x", "strategyqa")
    with pytest.raises(ValueError, match="corpus="):
        kard.knowledge_base("medqa")
    cfg = RunConfig.from_params(method="kard_rd", dataset="strategyqa", output_dir="/tmp/kard-bad", n_rationals=3)
    with pytest.raises(ValueError, match="n_rationals"):
        kard.run(cfg)
    with pytest.raises(ValueError, match="corpus="):
        kard.run(RunConfig.from_params(method="kard_bm25", dataset="medqa", output_dir="/tmp/kard-bad"))


def naive_maxsim(q, d, qm, dm):
    "Σ_i max_j q_i·d_j over real tokens, by loops."
    B, C = d.shape[:2]
    out = torch.zeros(B, C)
    for b in range(B):
        for c in range(C):
            s = 0.0
            for i in range(q.shape[1]):
                if qm[b, i]: s += max(float(q[b, i] @ d[b, c, j]) for j in range(d.shape[2]) if dm[b, c, j])
            out[b, c] = s
    return out


def test_maxsim_equals_naive_loops():
    torch.manual_seed(0)
    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.config = type("C", (), {"hidden_size": 6})(); self.emb = torch.nn.Embedding(20, 6)
        def forward(self, input_ids, attention_mask):
            return type("O", (), {"last_hidden_state": self.emb(input_ids)})()
    m = Reranker(Enc(), dim=5)
    q = torch.randint(1, 20, (2, 4)); qm = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    d = torch.randint(1, 20, (2, 3, 5)); dm = torch.ones(2, 3, 5, dtype=torch.long); dm[0, 1, 3:] = 0; dm[1, 2, 1:] = 0
    with torch.no_grad():
        got = m(q, qm, d, dm)
        want = naive_maxsim(m.encode(q, qm), m.encode(d.view(6, 5), dm.view(6, 5)).view(2, 3, 5, -1), qm, dm)
    assert torch.allclose(got, want, atol=1e-4)


def test_rerank_loss_and_temperatures():
    y = torch.tensor([[5.0, 2.0, 1.0, 0.0]])
    assert rerank_loss(y * 100, y).item() < 1e-6
    assert rerank_loss(y.flip(-1) * 100, y) > 0.5
    p = torch.softmax(y, -1); q = torch.log_softmax(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), -1)
    assert torch.isclose(rerank_loss(torch.ones(1, 4), y), (p * (p.log() - q)).sum(), atol=1e-6)
    assert torch.isclose(rerank_loss(torch.tensor([[0.0, 100.0, 0, 0]]), y, "ce"),
                         torch.nn.functional.cross_entropy(torch.tensor([[0.0, 1.0, 0, 0]]), torch.tensor([0])))
    assert temperatures(5, 500, 0.0, True) == (5, 500)
    with pytest.raises(ValueError, match="tau_label"):
        check_temperatures(1.0, 100.0, anneal=True)
    check_temperatures(5.0, 500.0, anneal=True)


def test_long_rationale_keeps_answer_line(student):
    _, tok = student
    ids = kard.encode_target(tok, EX, "kard_rd", "word " * 300, max_len=32)
    assert len(ids) == 32
    assert tok.decode(ids, skip_special_tokens=True).rstrip().endswith("Answer: A")
    assert kard.encode_target(tok, EX, "kard_rd", "short.", 32) == tok("short.\nAnswer: A").input_ids
