"KARD: prompt identity between training and inference, knowledge truncation, voting, the reranker's MaxSim and loss, decoder-only students."
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


OB = {"id": "o", "question": "The sun is", "choices": ["cold", "a star", "a planet", "The Star."], "answer": 1}


def test_text_answers_target_parse_and_vote():
    "answer_format='text': the option's text after 'Answer:', read back by normalised exact match (by hand)."
    assert kard.target_text(OB, "kard_rd", "Stars shine. ", "text") == "Stars shine.\nAnswer: a star"
    assert kard.target_text(OB, "kard_ft", answer_format="text") == "Answer: a star"
    assert kard.target_text(EX, "kard_rd", "Small.", "text") == "Small.\nAnswer: " + EX["choices"][EX["answer"]]
    ob = {**OB, "choices": ["cold", "a star", "a planet", "wet"]}
    assert kard.parse_answer("Stars shine.\nAnswer: A Star.", ob["choices"], "text") == 1
    assert kard.parse_answer("Answer: a planet\nQuestion: next one", ob["choices"], "text") == 2   # first line only
    assert kard.parse_answer("Answer: cold Answer: wet", ob["choices"], "text") == 3                # the last 'Answer:'
    assert kard.parse_answer("Answer: star light", ob["choices"], "text") is None                    # not an option
    assert kard.parse_answer("Answer: B", ob["choices"], "text") is None                             # a letter is no text
    assert kard.parse_answer("no answer line", ob["choices"], "text") is None
    assert kard.parse_answer("Answer: a star", OB["choices"], "text") is None      # "a star" = "The Star.": ambiguous
    assert kard.parse_answer("Answer: B", ob["choices"], "letter") == 1            # letter mode = parse_letter
    assert kard.vote(["Answer: wet", "Answer: cold", "Answer: cold", "Answer: B"], 4, ob["choices"], "text") == 0
    with pytest.raises(ValueError, match="answer_format"):
        kard.target_text(OB, "kard_rd", "x", "number")


def test_text_answers_scored_by_mean_loglik_of_the_options(monkeypatch):
    "The forced answer scores the options' texts (length-normalised) after 'rationale\\nAnswer:'; letters stay unnormalised."
    seen = {}
    def fake_score(model, tok, inputs, choices, prefixes=None, eos=True, length_norm=False, max_source_len=512, **kw):
        seen.update(choices=choices, prefixes=prefixes, length_norm=length_norm, eos=eos)
        return [[0.0, 1.0, 0.5, 0.2] for _ in inputs]
    monkeypatch.setattr(kard, "score_choices", fake_score)
    monkeypatch.setattr(kard, "is_causal", lambda m: True)
    monkeypatch.setattr(kard, "encode_input", lambda *a, **k: [1, 2, 3])
    ob = {**OB, "choices": ["cold", "a star", "a planet", "wet"]}
    assert kard.score_after(None, None, [ob], "kard_rd", "openbookqa", [[]], ["Stars shine.\nAnswer: cold"],
                            answer_format="text") == [1]
    assert seen == {"choices": [["cold", "a star", "a planet", "wet"]], "prefixes": ["Stars shine.\nAnswer:"],
                    "length_norm": True, "eos": False}
    kard.score_after(None, None, [ob], "kard_rd", "openbookqa", [[]], ["Stars shine.\nAnswer: cold"])
    assert seen["choices"] == [["A", "B", "C", "D"]] and seen["length_norm"] is False


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


# Decoder-only students: packaging (prompt + target, labels on the target only), new-text-only generation, runs.

KB_PROMPT = ("The following are multiple-choice questions. Generate a step-by-step explanations for each question with "
             "given knowledge.\nQuestion: Can a hamster fit in a teacup? A. yes B. no\nKnowledge: {k}\nExplanation:")


@pytest.fixture(scope="module")
def gpt2():
    from knife_repro.models import load_causal
    return load_causal("tiny-gpt2", seed=0)


@pytest.mark.parametrize("name", ["tiny-gpt2", "smollm2"])
def test_causal_rows_label_exactly_the_target(name, request):
    _, tok = request.getfixturevalue("gpt2" if name == "tiny-gpt2" else "smollm2")
    rat, passage = "Hamsters are small and a teacup holds 200 ml.", "Hamsters are small rodents."
    row = kard.encode_rows(tok, [{"ex": EX, "rationale": rat, "passages": [passage]}], "kard_bm25", "strategyqa",
                           max_source_len=512, max_target_len=128, causal=True)[0]
    prompt = tok(KB_PROMPT.format(k=passage)).input_ids                     # by hand: the whole prompt at once
    target = tok(" " + rat + "\nAnswer: A", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert row["input_ids"] == prompt + target
    assert row["labels"] == [-100] * len(prompt) + target
    assert row["attention_mask"] == [1] * len(prompt + target)
    ft = kard.encode_rows(tok, [{"ex": EX, "passages": []}], "kard_ft", "strategyqa", causal=True)[0]
    ft_prompt = tok("The following are multiple-choice questions. Answer each question.\nQuestion: Can a hamster fit in "
                    "a teacup? A. yes B. no\nAnswer:").input_ids
    ft_target = tok(" Answer: A", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert ft["input_ids"] == ft_prompt + ft_target and ft["labels"] == [-100] * len(ft_prompt) + ft_target


def test_causal_budgets_cut_knowledge_and_rationale_never_the_answer(gpt2, tmp_path):
    _, tok = gpt2
    row = kard.encode_rows(tok, [{"ex": EX, "rationale": "small " * 200, "passages": ["rodent " * 300]}], "kard_bm25",
                           "strategyqa", max_source_len=60, max_target_len=20, causal=True)[0]
    n = row["labels"].count(-100)
    prompt, target = row["input_ids"][:n], row["input_ids"][n:]
    assert n == 60 and len(target) == 20 and row["labels"][n:] == target     # separate budgets, labels on the target
    cue = tok("\nExplanation:", add_special_tokens=False).input_ids
    answer = tok("\nAnswer: A", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert prompt[-len(cue):] == cue and target[-len(answer):] == answer
    head = tok(KB_PROMPT.format(k="").split("\nKnowledge:")[0]).input_ids
    assert prompt[:len(head)] == head                                         # instruction and question intact
    with pytest.raises(ValueError, match="positions"):
        kard.run(RunConfig.from_params(method="kard_rd", dataset="toy", model="tiny-gpt2", output_dir=str(tmp_path),
                                       max_source_len=1000, max_target_len=100, verifier=""))


def test_causal_predict_returns_new_text_only_and_parses_it(gpt2, monkeypatch):
    model, tok = gpt2
    ex2 = {**EX, "id": "q2", "question": "Is a much longer question about hamsters and teacups also fine?", "answer": 1}
    cont = tok(" Hamsters are tiny.\nAnswer: B", add_special_tokens=False).input_ids + [tok.eos_token_id]
    seen = {}
    def fake_generate(input_ids, attention_mask, **kw):    # a causal LM returns prompt + continuation, left-padded
        seen.setdefault("prompts", []).extend(input_ids[i][attention_mask[i].bool()].tolist() for i in range(len(input_ids)))
        seen["kw"] = kw
        assert (attention_mask[:, -1] == 1).all()          # left padding: every prompt ends at the same column
        n = kw.get("num_return_sequences", 1)
        x = input_ids.repeat_interleave(n, 0)
        return torch.cat([x, torch.tensor([cont] * len(x))], 1)
    monkeypatch.setattr(model, "generate", fake_generate)
    ps = [["Hamsters are small rodents."], ["A teacup holds about 200 ml of tea."]]
    out = kard.predict(model, tok, [EX, ex2], "kard_bm25", "strategyqa", ps, max_source_len=96)
    assert out["texts"] == [["Hamsters are tiny.\nAnswer: B"]] * 2 and out["preds"] == [1, 1]
    assert seen["prompts"] == [tok(KB_PROMPT.format(k=ps[0][0])).input_ids,
                               tok(KB_PROMPT.format(k=ps[1][0]).replace(EX["question"], ex2["question"])).input_ids]
    assert len(out["scored"]) == 2 and not seen["kw"].get("do_sample")
    seen.clear()
    out = kard.predict(model, tok, [EX, ex2], "kard_bm25", "strategyqa", ps, max_source_len=96, decoding="vote", n_samples=3)
    assert seen["kw"]["do_sample"] and seen["kw"]["num_return_sequences"] == 3
    assert [len(t) for t in out["texts"]] == [3, 3] and out["preds"] == [1, 1]


def test_causal_sampling_votes_on_real_generations(gpt2):
    model, tok = gpt2
    kw = dict(max_source_len=96, max_new_tokens=6, decoding="vote", n_samples=3, seed=1)
    a = kard.predict(model, tok, [EX], "kard_rd", "strategyqa", [[]], **kw)
    assert a == kard.predict(model, tok, [EX], "kard_rd", "strategyqa", [[]], **kw)      # seeded
    assert len(a["texts"][0]) == 3 and not any("Question:" in t or "Explanation" in t for t in a["texts"][0])


def _kb(tmp_path):
    import json
    kb = tmp_path / "kb.jsonl"
    kb.write_text("\n".join(json.dumps({"id": str(i), "text": f"{a} is {'more' if a > b else 'less'} than {b}."})
                            for i, (a, b) in enumerate((a, b) for a in range(10, 100, 7) for b in range(12, 100, 9))))
    return str(kb)


def _smoke_cfg(tmp_path, model, **kw):
    return RunConfig.from_params(method="kard_bm25", dataset="toy", model=model, scale="smoke", output_dir=str(tmp_path),
                                 max_train_samples=8, max_eval_samples=4, epochs=1, batch_size=8, lr=1e-4,
                                 max_source_len=64, max_target_len=24, verifier="", corpus=_kb(tmp_path), **kw)


@pytest.mark.parametrize("answer_format", ["letter", "text"])
def test_verifier_reads_answers_as_the_student_writes_them(tmp_path, monkeypatch, answer_format):
    "The run filters its rationales with answer_as = its answer_format (letters, or the options' texts)."
    import knife_repro.rationales as ra
    seen = {}
    def fake_filter(examples, rationales, verifier, answer_as="letter", **kw):
        seen["answer_as"] = answer_as
        return rationales
    monkeypatch.setattr(ra, "filter_rationales", fake_filter)
    kard.run(RunConfig.from_params(method="kard_rd", dataset="toy", model="tiny-gpt2", scale="smoke", output_dir=str(tmp_path),
                                   max_train_samples=8, max_eval_samples=4, epochs=1, batch_size=8, lr=1e-4,
                                   max_source_len=64, max_target_len=24, verifier="tiny-gpt2", answer_format=answer_format))
    assert seen == {"answer_as": answer_format}


@pytest.mark.parametrize("answer_format", ["letter", "text"])
def test_kard_runs_end_to_end_with_a_causal_student(tmp_path, answer_format):
    rec = kard.run(_smoke_cfg(tmp_path, "tiny-gpt2", decoding="vote", n_samples=3, answer_format=answer_format))
    assert rec["info"]["student"] == "causal" and rec["info"]["train_examples"] == 8 and rec["metrics"]["n"] == 4
    assert rec["history"] and all(h["loss"] == h["loss"] for h in rec["history"] if "loss" in h)   # finite losses
    assert not any("Question:" in s["output"] for s in rec["samples"])                             # new text only
    per = rec["per_example"]                  # every test question's gold and prediction: the cpu table's paired tests
    assert len(per) == 4 and len({e["id"] for e in per}) == 4 and {"gold", "pred", "pred_scored"} <= set(per[0])
    assert sum(e["pred"] == e["gold"] for e in per) / 4 == rec["metrics"]["accuracy"]
    assert sum(e["pred_scored"] == e["gold"] for e in per) / 4 == rec["metrics"]["accuracy_scored"]


@pytest.mark.slow
def test_kard_runs_with_pretrained_smollm2(tmp_path):
    "SmolLM2-135M, 8 questions, one step: it writes text in KARD's format (a pretrained LM, not an untrained one)."
    rec = kard.run(_smoke_cfg(tmp_path, "smollm2-135m"))
    assert rec["info"]["student"] == "causal" and rec["timings"].get("train_s", 0) > 0
    outs = [s["output"] for s in rec["samples"]]
    assert all(o.strip() for o in outs) and not any("Question:" in o for o in outs)
    assert sum(kard.parse_letter(o, 2) is not None for o in outs) >= 1, outs


# --- the typed config: one resolution for the notebook, the CLI and the sweeps ---------------------------

# the notebook's parameters cell: None = the scale's preset
NB_PARAMS = dict(model=None, rationale_source=None, teacher=None, verifier=None, n_rationales=None, k_train=None,
                 k=None, kappa=None, reranker=None, reranker_loss=None, decoding=None, n_samples=None, corpus=None)


def _notebook(m, **params):
    "What 21_kard's run cell resolves (`config_for`)."
    return kard.KardConfig.resolve(method=m, lenient=True, **{**NB_PARAMS, **params})


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_cli_and_notebook_resolve_the_same_run(scale, tmp_path):
    from knife_repro.train import config_from_args
    nb = _notebook("kard_rerank", dataset="openbookqa", seed=2, scale=scale, output_dir=str(tmp_path), kappa=7, verifier="")
    cli, _ = config_from_args(["--set", "method=kard_rerank", "dataset=openbookqa", "seed=2", f"scale={scale}",
                               f"output_dir={tmp_path}", "kappa=7", "verifier="])
    assert cli.to_dict() == nb.to_dict() and cli.run_id == nb.run_id
    assert nb.flags["kappa"] == 7 and nb.flags["verifier"] == "" and nb.flags["n_rationales"] == 2
    # the scale's preset, by hand from the notebook's former `size` dict and its model comments
    expect = {"smoke": ("tiny-t5", 3e-3, 4, 128, 192, 64), "cpu": ("smollm2-135m", 3e-5, 1, 600, 256, 128),
              "paper": ("google/flan-t5-base", 1e-4, 3, -1, 512, 512)}[scale]
    assert (nb.model, nb.lr, nb.epochs, nb.max_train_samples, nb.max_source_len, nb.max_target_len) == expect
    assert nb.scheduler == ("constant" if scale == "paper" else "linear")


def test_a_default_spelled_out_is_the_same_run():
    a = _notebook("kard_rd", dataset="strategyqa")
    assert _notebook("kard_rd", dataset="strategyqa", kappa=5, decoding="greedy", faithfulness=False).run_id == a.run_id
    assert RunConfig.from_params(**{k: v for k, v in a.to_dict().items() if k != "flags"}).run_id == a.run_id
    assert _notebook("kard_rd", dataset="strategyqa", kappa=6).run_id != a.run_id


def test_cpu_preset_is_the_shared_budget_plus_kards_knobs():
    from knife_repro.core import CPU_BUDGET
    c = kard.KardConfig.resolve(method="kard_bm25", dataset="strategyqa", scale="cpu")
    assert {k: getattr(c, k) for k in CPU_BUDGET} == CPU_BUDGET
    assert (c.model, c.lr, c.max_train_samples, c.max_dev_samples) == ("smollm2-135m", 3e-5, 600, 200)
    # issue 16: KARD's own cpu knobs are pretrained models (the former placeholders were the smoke ones: tiny-gpt2,
    # tiny-t5, kappa 5); a random verifier would keep a random subset of the rationales
    assert (c.flags["teacher"], c.flags["verifier"], c.flags["reranker"], c.flags["n_rationales"], c.flags["kappa"],
            c.flags["reranker_epochs"], c.flags["teacher_max_new_tokens"]) == ("smollm2-135m", "smollm2-135m", "minilm", 2,
                                                                              20, 1, 128)
    from knife_repro.models import PRESETS
    assert PRESETS[c.flags["teacher"]].gguf and PRESETS[c.flags["verifier"]].gguf      # pretrained weights, not random
    assert c.flags["gold_rationales_only"] and c.flags["exclude_own_fact"] and c.flags["decoding"] == "greedy"
    # a 135M student answered "A" to 204 of 206 validation questions with KARD's letters: the cpu answer line is the text
    assert c.flags["answer_format"] == "text"
    assert kard.KardConfig.resolve(method="kard_bm25", dataset="strategyqa", scale="paper").flags["answer_format"] == "letter"


@pytest.mark.parametrize("bad, name", [(dict(n_rationales=0), "n_rationales"), (dict(kappa="many"), "kappa"),
                                       (dict(reranker_loss="mse"), "reranker_loss"), (dict(decoding="beam"), "decoding"),
                                       (dict(rationale_source="gpt5"), "rationale_source"), (dict(kapa=3), "kapa"),
                                       (dict(faithfulness="perhaps"), "faithfulness"),
                                       (dict(answer_format="number"), "answer_format")])
def test_bad_own_flag_raises_config_error_naming_it(bad, name):
    from knife_repro.core import ConfigError
    from knife_repro.train import config_from_args
    with pytest.raises(ConfigError, match=name):
        kard.KardConfig.resolve(method="kard_rd", dataset="strategyqa", **bad)
    with pytest.raises(ConfigError, match=name):
        config_from_args(["--set", "method=kard_rd", *(f"{k}={v}" for k, v in bad.items())])
    with pytest.raises(ConfigError, match=name):                  # a config built directly: `run` checks it first
        kard.run(RunConfig.from_params(method="kard_rd", dataset="strategyqa", output_dir="/tmp/kard-bad", **bad))


# --- fidelity with KARD's released code (issue 16) ---------------------------------------------------------

def test_reranker_reads_questions_up_to_512_tokens():
    "The code cuts reranker queries at 512 tokens; at 128 (our former cut) the end of a long question was never seen."
    from knife_repro.models import load_encoder
    from knife_repro.reranker import RerankCollate, rerank_scores
    torch.manual_seed(0)
    enc, tok = load_encoder("minilm")
    q = "patient " * 300                                  # 300 one-piece words + [CLS] + [SEP]
    col = RerankCollate(tok, ["a passage", "another passage"], n_from_each=1)
    b = col([{"query": q, "cands": [0, 1], "labels": [1.0, 0.0], "n_r": 1}])
    assert b["q_input_ids"].shape[1] == 302
    m = Reranker(enc)
    docs = ["The heart pumps blood.", "Kidneys filter blood."]
    a = rerank_scores(m, tok, q + "heart", docs)
    z = rerank_scores(m, tok, q + "kidney", docs)
    assert a != z                                         # the 301st word changes the scores: it was read


def test_reranker_trains_on_every_kept_pair_and_holds_out_whole_questions():
    exs = [{**EX, "id": f"q{i}"} for i in range(40)]
    rats = {f"q{i}": [f"r{j} of q{i}" for j in range(i % 3)] for i in range(40)}
    fit, held = kard.reranker_pairs(exs, rats, seed=0)
    # by hand: 13 questions with 1 rationale, 13 with 2 (14 with none) -> 39 pairs; held out: min(max(16, 26 // 20), 13)
    assert len(fit) + len(held) == 39 and len({p["id"] for p in held}) == 13
    assert sorted(p["rationale"] for p in fit + held) == sorted(r for rs in rats.values() for r in rs)
    assert not {p["id"] for p in fit} & {p["id"] for p in held}              # a held-out question is not trained on
    assert all(p["query"] == kard.question_text(EX) for p in fit)


OBQA_EX = {"id": "o1", "question": "The sun is", "choices": ["cold", "a star", "a planet", "wet"], "answer": 1,
           "rationale": "the sun is a star", "llm_rationales": [], "context": ""}
BOOK = ["The sun is a star.", "A star is a large ball of gas", "the sun rises in the east"]


def test_fact_rationale_ends_in_the_answer():
    assert kard.fact_rationale(OBQA_EX) == "The sun is a star. So, the answer is a star."
    rats, used = kard.pick_rationales([OBQA_EX], "human_answer", None, 1)
    assert used == "human_answer" and rats == {"o1": ["The sun is a star. So, the answer is a star."]}


@pytest.mark.parametrize("source", ["human", "human_answer"])
def test_own_fact_left_out_of_its_training_passages(source):
    ix = BM25Index.build(BOOK, progress=False)
    rats, _ = kard.pick_rationales([OBQA_EX], source, None, 1)
    kept = kard.training_examples([OBQA_EX], rats, "kard_bm25", "openbookqa", ix, k_train=1)
    assert kept[0]["passages"] == ["The sun is a star."]                  # the rationale retrieves its own fact
    left = kard.training_examples([OBQA_EX], rats, "kard_bm25", "openbookqa", ix, k_train=1, exclude_own_fact=True)
    assert len(left[0]["passages"]) == 1 and left[0]["passages"][0] in BOOK[1:]   # another passage, still k_train of them
    two = kard.training_examples([OBQA_EX], rats, "kard_bm25", "openbookqa", ix, k_train=2, exclude_own_fact=True)
    assert sorted(two[0]["passages"]) == sorted(BOOK[1:])                  # both others share a word with the rationale


def test_own_fact_left_out_even_when_the_knowledge_base_holds_it_twice():
    "OBQA's book + crowd-sourced facts repeat some facts: both copies are left out and k_train others remain."
    ix = BM25Index.build(["The sun is a star.", "the sun is a star", "A star is a large ball of gas",
                          "the sun rises in the east", "rain is wet"], progress=False)
    rats, _ = kard.pick_rationales([OBQA_EX], "human", None, 1)
    left = kard.training_examples([OBQA_EX], rats, "kard_bm25", "openbookqa", ix, k_train=1, exclude_own_fact=True)
    assert len(left[0]["passages"]) == 1 and left[0]["passages"][0] in ("A star is a large ball of gas", "the sun rises in the east")
    two = kard.training_examples([OBQA_EX], rats, "kard_bm25", "openbookqa", ix, k_train=2, exclude_own_fact=True)
    assert sorted(two[0]["passages"]) == ["A star is a large ball of gas", "the sun rises in the east"]


def test_file_rationales_keep_only_gold_answers(tmp_path):
    ex = {**EX, "llm_rationales": ["yes because small", "no because big", "yes, tiny"], "llm_answers": [0, 1, 0]}
    rats, used = kard.pick_rationales([ex], "file", tmp_path, 5)
    assert used == "file" and rats == {"q1": ["yes because small", "yes, tiny"]}
    rats, _ = kard.pick_rationales([ex], "file", tmp_path, 5, gold_only=False)
    assert rats == {"q1": ["yes because small", "no because big", "yes, tiny"]}


def test_teacher_rationales_generated_once_for_every_seed(tmp_path):
    exs = [{**EX, "id": f"q{i}"} for i in range(3)]
    a, _ = kard.pick_rationales(exs, "hf", tmp_path, 2, "tiny-gpt2", "strategyqa", seed=0, max_new_tokens=4)
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1 and all(len(v) == 2 for v in a.values())
    b, _ = kard.pick_rationales(exs[1:], "hf", tmp_path, 2, "tiny-gpt2", "strategyqa", seed=2, max_new_tokens=4)
    assert list(tmp_path.glob("*.jsonl")) == files and b == {k: a[k] for k in ("q1", "q2")}   # seed 2 reads seed 0's
    lines = files[0].read_text().splitlines()
    files[0].write_text("\n".join([lines[0], "{broken", *lines[1:]]) + "\n")                   # corrupt: rebuilt
    c, _ = kard.pick_rationales(exs, "hf", tmp_path, 2, "tiny-gpt2", "strategyqa", seed=1, max_new_tokens=4)
    assert c == a and len(list(tmp_path.glob("*.corrupt-*"))) == 1


def test_passage_recall_against_evidence_and_gold_fact():
    ix = BM25Index.build(BOOK, ids=["b0", "b1", "b2"], progress=False)
    sqa = [{**EX, "evidence_ids": ["b0", "b2"]}, {**EX, "id": "q2", "evidence_ids": []}]
    # by hand: question 1 got b0 of its {b0, b2}; question 2 has no annotated evidence (left out)
    assert kard.passage_recall(sqa, [[BOOK[0], BOOK[1]], [BOOK[2]]], ix) == {"recall": 0.5, "any": 1.0, "n": 1}
    assert kard.passage_recall([OBQA_EX], [[BOOK[1]]], ix) == {"recall": 0.0, "any": 0.0, "n": 1}
    assert kard.passage_recall([OBQA_EX], [[BOOK[1], BOOK[0]]], ix) == {"recall": 1.0, "any": 1.0, "n": 1}


def test_oracle_gets_the_gold_passages_and_trains_as_bm25():
    ix = BM25Index.build(BOOK, ids=["b0", "b1", "b2"], progress=False)
    sqa = [{**EX, "evidence_ids": ["b2", "b0", "missing"]}, {**EX, "id": "q2", "evidence_ids": []}]
    assert kard.test_passages(sqa, "kard_oracle", ix) == [[BOOK[2], BOOK[0]], []]   # all gold, in evidence order
    assert kard.test_passages([OBQA_EX], "kard_oracle", ix) == [[BOOK[0]]]            # OBQA: its own fact1
    rats = {"o1": ["Stars are balls of gas."]}
    assert kard.training_examples([OBQA_EX], rats, "kard_oracle", "openbookqa", ix) == \
        kard.training_examples([OBQA_EX], rats, "kard_bm25", "openbookqa", ix)


def test_selection_runs_report_the_validation_split(tmp_path):
    "sweeps/kard_select.yaml chooses k, rationales and lengths with report_split=validation: no test question is scored."
    rec = kard.run(_smoke_cfg(tmp_path, "tiny-gpt2", report_split="validation"))
    assert rec["info"]["test_split"] == "validation" and rec["config"]["report_split"] == "validation"
    assert rec["info"]["evidence_recall"]["n"] == 0          # the toy corpus has no gold passages: left out, not 0


# --- the cpu-scale table, from hand-made records -----------------------------------------------------------

def _kard_records(tmp_path):
    "StrategyQA, 4 test questions (gold 0, 1, 0, 1), FT / RD / KARD-reranker x seeds 0, 1, an RD vote run on seed 0, and"
    " records the table must leave out (validation split, smoke scale)."
    from knife_repro.core import write_run_record
    from knife_repro.train import resolve_config
    golds = [0, 1, 0, 1]
    preds = {("kard_ft", 0): [0, 0, 0, 0], ("kard_ft", 1): [1, 1, 0, 1], ("kard_rd", 0): [0, 1, 0, 0],
             ("kard_rd", 1): [0, 1, 0, 1], ("kard_rerank", 0): [0, 1, 0, 1], ("kard_rerank", 1): [0, None, 0, 1]}
    def write(m, s, pr, **kw):
        cfg = resolve_config(method=m, dataset="strategyqa", seed=s, output_dir=str(tmp_path),
                             **{"scale": "cpu", "rationale_source": "file", **kw})
        ex = [{"id": f"q{i}", "gold": g, "pred": p} for i, (g, p) in enumerate(zip(golds, pr))]
        info = {"evidence_recall": {"recall": [0.5, 0.7][s]}, "evidence_recall_bm25": {"recall": 0.25},
                "evidence_recall_pool": {"recall": 0.75}} if m == "kard_rerank" else {}
        write_run_record(cfg, {"accuracy": sum(e["gold"] == e["pred"] for e in ex) / 4, "n": 4,
                               "accuracy_ci_low": 0.1 * (s + 1), "accuracy_ci_high": 0.9},
                         timings={"train_s": 600.0, "eval_s": 60.0 * (s + 1), "tokens_per_s": 99.0}, info=info,
                         per_example=ex)
    for (m, s), pr in preds.items(): write(m, s, pr)
    write("kard_rd", 0, [1, 1, 1, 1], decoding="vote")
    write("kard_rd", 2, [0, 0, 0, 0], report_split="validation")
    write("kard_rd", 0, [0, 0, 0, 0], scale="smoke")
    return tmp_path / "runs"


def test_cpu_table_mean_std_ci_and_minutes_from_records(tmp_path):
    import math
    runs = _kard_records(tmp_path)
    assert len(kard.cpu_records(runs)) == 7                      # 6 greedy test runs + the vote; not validation/smoke
    t = kard.cpu_table(runs).set_index(["method", "decoding"])
    # by hand: FT 2/4 and 3/4 -> 0.625 ± sqrt(2 * 0.125^2 / 1); RD 3/4 and 4/4 -> 0.875; reranker 4/4 and 3/4
    for m, mean in (("FT", 0.625), ("RD", 0.875), ("KARD (reranker)", 0.875)):
        r = t.loc[(m, "greedy")]
        assert math.isclose(r.accuracy, mean) and math.isclose(r["std"], 0.125 * math.sqrt(2)) and r.n_seeds == 2
        assert math.isclose(r.ci_low, 0.15) and r.seeds == "0,1" and math.isclose(r.minutes_mean, 11.5)
        assert math.isclose(r.minutes_max, 12.0)
    assert t.loc[("RD", "vote")].n_seeds == 1 and t.loc[("RD", "vote")].accuracy == 0.5
    assert t.loc[("FT", "greedy")].source == "—" and t.loc[("RD", "greedy")].source == "file"
    assert list(kard.cpu_table(runs).method[:3]) == ["FT", "RD", "KARD (reranker)"]   # greedy rows first, in order
    rc = kard.recall_table(runs).iloc[0]
    assert rc.method == "KARD (reranker)" and math.isclose(rc.recall, 0.6) and (rc.recall_bm25, rc.recall_pool) == (0.25, 0.75)


def test_cpu_paired_tests_and_readme_block(tmp_path):
    runs = _kard_records(tmp_path)
    tests = {(p["A"], p["B"]): p for p in kard.paired_tests(kard.cpu_records(runs))}
    rd_ft = tests[("RD", "FT")]
    # by hand: seed 0 RD right on q0-q2, FT on q0, q2; seed 1 RD on all, FT on q1-q3: two discordant, both for RD
    assert (rd_ft["only_a"], rd_ft["only_b"], rd_ft["n_seeds"], rd_ft["n_questions"]) == (2, 0, 2, 4)
    assert abs(rd_ft["diff"] - 0.25) < 1e-12 and rd_ft["source"] == "file" and rd_ft["seeds"] == "0,1"
    kr = tests[("KARD (reranker)", "RD")]          # seed 0: q3 for the reranker; seed 1: q1 (no letter) for RD
    assert (kr["only_a"], kr["only_b"], kr["diff"]) == (1, 1, 0.0)
    block = kard.cpu_readme_block(runs)
    assert "| strategyqa | — | FT | greedy | 62.5 ± 17.7 | 0,1 | [15.0, 90.0] |" in block
    assert "| strategyqa | file | RD | vote | 50.0 (one seed) | 0 |" in block and "11.5, 12.0 |" in block
    assert "56.57 (t5-base" in block                            # the paper's StrategyQA KARD cell, beside the reranker
    assert "recall@1 60.0 (BM25@1 25.0, BM25 pool@20 75.0)" in block
    assert "strategyqa (file rationales): RD − FT = +25.0 [" in block and "(seeds 0,1, 4 questions)" in block
    from knife_repro.tables import model_size
    assert f"`smollm2-135m` ({model_size('smollm2-135m')})" in block and "Built from 7 committed records" in block


def test_cpu_section_without_records(tmp_path):
    assert kard.cpu_records(tmp_path) == [] and kard.cpu_table(tmp_path).empty and kard.recall_table(tmp_path).empty
    assert kard.paired_tests([]) == []
    assert kard.cpu_readme_block(tmp_path) == "No committed `cpu`-scale KARD records yet."


def test_kard_records_per_example_and_inference_tokens(tmp_path):
    "Every test question's prediction (paired tests), and the tokens generated per question: all samples of a vote."
    from knife_repro.tables import correctness
    from knife_repro.models import load_causal
    rec = kard.run(_smoke_cfg(tmp_path, "tiny-gpt2", decoding="vote", n_samples=3))
    ex = rec["per_example"]
    assert len(ex) == 4 == rec["metrics"]["n"] and all(len(e["other_samples"]) == 2 for e in ex)
    assert sum(correctness(rec).values()) / 4 == pytest.approx(rec["metrics"]["accuracy"])
    _, tok = load_causal("tiny-gpt2", seed=0)
    n = lambda t: len(tok(t, add_special_tokens=False).input_ids)
    want = sum(n(e["generation"]) + sum(map(n, e["other_samples"])) for e in ex) / 4
    assert rec["metrics"]["gen_tokens_per_question"] == pytest.approx(want)
    assert rec["metrics"]["scored_tokens_per_question"] == 0.0          # the headline parses; it scores nothing
