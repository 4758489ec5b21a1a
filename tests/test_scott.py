"SCOTT: contrastive-decoding step, batched = sequential decoding, counterfactual loss mask, flag errors."
import pytest
import torch

from knife_repro.core import ConfigError, RunConfig
from knife_repro.models import load_causal, load_seq2seq
from knife_repro.scott import (ContrastiveTeacher, cd_scores, contrastive_decode, contrastive_decode_reference,
                               encode_student, load_prompt, pair_counterfactuals, prefix_ids, scott_flags,
                               scott_loss, student_prefix, teacher_prompt, wrong_answer)


@pytest.fixture(scope="module")
def gpt2():
    m, t = load_causal("tiny-gpt2", seed=0)
    return m.eval(), t


@pytest.fixture(scope="module")
def t5():
    return load_seq2seq("tiny-t5", seed=0)


QS = ["Would a pear sink in water?", "Is the sky blue?", "Could a llama birth twice during the War in Vietnam?",
      "Did Napoleon ever visit Egypt during his long military campaigns in the east of the Mediterranean?",
      "Is a cat a mammal?"]
EXS = [dict(id=f"q{i}", question=q, choices=["yes", "no"], answer=i % 2) for i, q in enumerate(QS)]


def test_one_step_equals_formula(gpt2):
    m, tok = gpt2
    tpl = load_prompt("strategyqa")
    p, n = teacher_prompt(tpl, EXS[0], 0), teacher_prompt(tpl, EXS[0], 1)
    with torch.no_grad():
        z1 = m(torch.tensor([tok(p, add_special_tokens=False).input_ids])).logits[0, -1]
        z2 = m(torch.tensor([tok(n, add_special_tokens=False).input_ids])).logits[0, -1]
    lp1, lp2 = torch.log_softmax(z1.double(), -1), torch.log_softmax(z2.double(), -1)
    want = int(torch.argmax(lp1 + (lp1 - lp2)))
    assert torch.allclose(cd_scores(z1, z2).double(), lp1 + (lp1 - lp2), atol=1e-4)
    got = contrastive_decode(m, tok, [p], [n], max_new_tokens=1, stop_ids=[])[0]
    assert got == [want]
    # greedy is the plain argmax, and differs from CD on this step for this model
    assert contrastive_decode(m, tok, [p], None, max_new_tokens=1, stop_ids=[])[0] == [int(z1.argmax())]


@pytest.mark.parametrize("contrast", ["wrong", "empty", None])
def test_batched_equals_sequential(gpt2, contrast):
    m, tok = gpt2
    tpl = load_prompt("strategyqa")
    P = [teacher_prompt(tpl, e, e["answer"]) for e in EXS]
    N = None if contrast is None else [teacher_prompt(tpl, e, wrong_answer(e) if contrast == "wrong" else None) for e in EXS]
    lens = {len(tok(p, add_special_tokens=False).input_ids) for p in P}
    assert len(lens) > 1                                   # left padding is exercised
    batched = contrastive_decode(m, tok, P, N, max_new_tokens=20, stop_ids=[])
    seq = [contrastive_decode_reference(m, tok, p, None if N is None else N[i], max_new_tokens=20, stop_ids=[])
           for i, p in enumerate(P)]
    assert batched == seq and all(len(s) == 20 for s in seq)


def test_batched_stops_like_sequential(gpt2):
    m, tok = gpt2
    tpl = load_prompt("strategyqa")
    P = [teacher_prompt(tpl, e, e["answer"]) for e in EXS]
    N = [teacher_prompt(tpl, e, wrong_answer(e)) for e in EXS]
    free = contrastive_decode(m, tok, P, N, max_new_tokens=12, stop_ids=[])
    stop = [free[1][3], free[3][5]]                        # make two questions stop at different steps
    batched = contrastive_decode(m, tok, P, N, max_new_tokens=12, stop_ids=stop)
    seq = [contrastive_decode_reference(m, tok, p, n, max_new_tokens=12, stop_ids=stop) for p, n in zip(P, N)]
    assert batched == seq
    assert len(batched[1]) <= 3 and not any(t in stop for b in batched for t in b)


def test_counterfactual_loss_masks_every_rationale_token(t5):
    model, tok = t5
    ex = EXS[0]
    e = encode_student(tok, ex, "Pears are less dense than water so they float.", 1, "counterfactual")
    ans = tok(" no", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert e["labels"][-len(ans):] == ans and all(x == -100 for x in e["labels"][:-len(ans)])
    assert e["decoder_input_ids"][1:] == tok(  # the whole rationale is still teacher-forced
        "[counterfactual] Pears are less dense than water so they float. So the answer is",
        add_special_tokens=False).input_ids + ans[:-1]
    # the loss does not depend on the logits at rationale positions: zero gradient there
    b = {k: torch.tensor([v]) for k, v in e.items()}
    logits = model(input_ids=b["input_ids"], decoder_input_ids=b["decoder_input_ids"]).logits.detach().requires_grad_()
    loss = torch.nn.functional.cross_entropy(logits[0], b["labels"][0], ignore_index=-100)
    loss.backward()
    g = logits.grad[0].abs().sum(-1)
    n_r = len(e["labels"]) - len(ans)
    assert torch.all(g[:n_r] == 0) and torch.all(g[n_r:] > 0)
    f = encode_student(tok, ex, "Pears float.", 1, "factual")
    assert -100 not in f["labels"]


@pytest.mark.parametrize("kind", ["factual", "counterfactual"])
@pytest.mark.parametrize("max_target_len", [18, 24, 48, 128])
def test_long_rationale_is_cut_never_the_answer_suffix(t5, kind, max_target_len):
    _, tok = t5
    ex = EXS[2]                                            # gold "yes"; rationalise the wrong answer "no"
    rationale = " ".join(f"fact{i} pears \x07float bankbankbank on water" for i in range(60))
    e = encode_student(tok, ex, rationale, 1, kind, max_target_len=max_target_len)
    seq = e["decoder_input_ids"][1:] + e["labels"][-1:]    # the teacher-forced decoder sequence
    tag = tok(f"[{kind}]", add_special_tokens=False).input_ids
    tail = tok(" So the answer is no", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert len(seq) == len(e["labels"]) <= max_target_len
    assert seq[:len(tag)] == tag and seq[-len(tail):] == tail
    assert len(seq) >= max_target_len - 3 and len(seq) > len(tag) + len(tail)   # the rationale is cut, not dropped
    assert tok.decode(seq, skip_special_tokens=True).endswith("So the answer is no")
    ans = tok(" no", add_special_tokens=False).input_ids + [tok.eos_token_id]
    if kind == "counterfactual":
        assert [x for x in e["labels"] if x != -100] == ans
    else:
        assert e["labels"] == seq
    short = encode_student(tok, ex, "Pears float.", 1, kind, max_target_len=128)
    assert short["decoder_input_ids"][1:] + short["labels"][-1:] == \
        tok(student_prefix("Pears float.", kind), add_special_tokens=False).input_ids + ans   # fits: untouched


def test_prefix_too_short_for_cue_is_an_error(t5):
    _, tok = t5
    with pytest.raises(ValueError, match="So the answer is"):
        prefix_ids(tok, "Pears float.", "factual", True, room=3)


def test_scott_loss_mixes_with_alpha(t5):
    model, tok = t5
    ex = EXS[0]
    fact = [encode_student(tok, ex, "Pears float.", 1, "factual")]
    cf = [encode_student(tok, ex, "Pears sink.", 0, "counterfactual")]
    from knife_repro.training import pad_collate
    batch = pad_collate(pair_counterfactuals(fact, cf))
    with torch.no_grad():
        lf = scott_loss(0.0)({"student": model}, batch)[0]
        l1 = scott_loss(0.5)({"student": model}, batch)[0]
        lc = (l1 - 0.5 * lf) / 0.5
        l2 = scott_loss(0.25)({"student": model}, batch)[0]
    assert torch.allclose(l2, 0.75 * lf + 0.25 * lc, atol=1e-5) and not torch.allclose(lf, lc)


def test_counterfactual_teacher_targets_wrong_and_contrasts_gold(gpt2):
    m, tok = gpt2
    t = ContrastiveTeacher(m, tok, "strategyqa", "cd_empty", counterfactual=True)
    for e in EXS:
        target, contrast, used = t.target_and_contrast(e)
        assert target == 1 - e["answer"] and contrast == e["answer"] and used
    f = ContrastiveTeacher(m, tok, "strategyqa", "cd_empty")
    assert f.target_and_contrast(EXS[0]) == (0, None, True)
    assert ContrastiveTeacher(m, tok, "strategyqa", "greedy").target_and_contrast(EXS[0])[2] is False


def test_bad_flags_name_the_parameter():
    cfg = lambda **kw: RunConfig.from_params(method="scott", dataset="strategyqa", **kw)
    with pytest.raises(ConfigError, match="rationales"):
        scott_flags(cfg(rationales="sampled"))
    with pytest.raises(ConfigError, match="counterfactual"):
        scott_flags(cfg(rationales="human", counterfactual=True))
    with pytest.raises(ConfigError, match="alpha"):
        scott_flags(cfg(alpha=1.5))
    with pytest.raises(ConfigError, match="tags"):
        scott_flags(cfg(tags="maybe"))
    with pytest.raises(ConfigError, match="colour"):
        scott_flags(cfg(colour="red"))
    assert scott_flags(cfg(counterfactual="true", rationales="cd_wrong"))["counterfactual"] is True


# --- decoder-only students ----------------------------------------------------------------

from knife_repro.qa import CAUSAL_SEP
from knife_repro.scott import student_generate, student_input
from knife_repro.training import pad_collate


def _ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


@pytest.mark.parametrize("kind", ["factual", "counterfactual"])
def test_causal_rows_put_labels_exactly_where_expected(gpt2, kind):
    _, tok = gpt2
    ex = EXS[0]                                            # gold "no"; the counterfactual rationalises "yes"
    answer = 1 if kind == "factual" else 0
    row = encode_student(tok, ex, "Pears are less dense than water.", answer, kind, causal=True)
    prompt = tok(f"[{kind}] Would a pear sink in water?").input_ids + _ids(tok, "\nAnswer:")
    tag = _ids(tok, f" [{kind}]")
    body = _ids(tok, f" [{kind}] Pears are less dense than water. So the answer is")
    ans = _ids(tok, " " + ex["choices"][answer]) + [tok.eos_token_id]
    assert body[:len(tag)] == tag                          # the target starts with the tag
    assert row["input_ids"] == prompt + body + ans and row["attention_mask"] == [1] * len(row["input_ids"])
    assert "decoder_input_ids" not in row
    if kind == "factual":
        assert row["labels"] == [-100] * len(prompt) + body + ans
    else:                                                  # the tag and R' carry no loss either
        assert row["labels"] == [-100] * (len(prompt) + len(body)) + ans


@pytest.mark.parametrize("kind", ["factual", "counterfactual"])
@pytest.mark.parametrize("max_source_len,max_target_len", [(16, 18), (24, 32), (128, 48)])
def test_causal_long_rationale_is_cut_never_cue_or_answer(gpt2, kind, max_source_len, max_target_len):
    _, tok = gpt2
    ex = {**EXS[2], "question": " ".join([EXS[2]["question"]] * 20)}   # the prompt must be cut too
    rationale = " ".join(f"fact{i} pears \x07float bankbankbank on water" for i in range(60))
    row = encode_student(tok, ex, rationale, 1, kind, max_source_len=max_source_len, max_target_len=max_target_len,
                         causal=True)
    sep = _ids(tok, "\nAnswer:")
    n_prompt = max_source_len                              # a long question fills the prompt exactly
    prompt, target = row["input_ids"][:n_prompt], row["input_ids"][n_prompt:]
    assert prompt == tok(f"[{kind}] {ex['question']}").input_ids[:n_prompt - len(sep)] + sep
    tag = _ids(tok, f" [{kind}]")
    tail = _ids(tok, " So the answer is no") + [tok.eos_token_id]
    assert target[:len(tag)] == tag and target[-len(tail):] == tail
    assert max_target_len - 3 <= len(target) <= max_target_len and len(target) > len(tag) + len(tail)
    assert row["labels"][:n_prompt] == [-100] * n_prompt
    ans = _ids(tok, " no") + [tok.eos_token_id]
    if kind == "factual":
        assert row["labels"][n_prompt:] == target
    else:
        assert row["labels"][n_prompt:] == [-100] * (len(target) - len(ans)) + ans


def _nll(model, ids: list[int], labels: list[int]) -> tuple[float, int]:
    "(sum, count) of -log P(ids[t] | ids[:t]) over labelled t, one unpadded forward per prefix: the definition."
    tot, n = 0.0, 0
    with torch.no_grad():
        for t, lab in enumerate(labels):
            if lab == -100: continue
            assert lab == ids[t]
            logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
            tot -= torch.log_softmax(logits.double(), -1)[lab].item(); n += 1
    return tot, n


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.25])
def test_causal_scott_loss_is_mean_target_token_nll(gpt2, alpha):
    m, tok = gpt2
    fact = [encode_student(tok, EXS[i], r, EXS[i]["answer"], "factual", causal=True)
            for i, r in ((0, "Pears float."), (3, "Napoleon led the French campaign in Egypt and Syria."))]
    cf = [encode_student(tok, EXS[i], r, 1 - EXS[i]["answer"], "counterfactual", causal=True)
          for i, r in ((1, "The sky is green at noon."), (4, "Cats lay eggs."))]
    batch = pad_collate([{**f, **{f"cf_{k}": v for k, v in c.items()}} for f, c in zip(fact, cf)],
                        pad_id=tok.pad_token_id)
    assert len({len(f["input_ids"]) for f in fact}) > 1    # right padding is exercised
    with torch.no_grad():
        loss, parts = scott_loss(alpha)({"student": m}, batch)
    mean = lambda rows: (lambda s: sum(x[0] for x in s) / sum(x[1] for x in s))([_nll(m, r["input_ids"], r["labels"])
                                                                                  for r in rows])
    lf, lc = mean(fact), mean(cf)
    assert parts["loss_factual"].item() == pytest.approx(lf, abs=1e-4)
    want = lf if alpha == 0 else (1 - alpha) * lf + alpha * lc
    assert loss.item() == pytest.approx(want, abs=1e-4)
    if alpha: assert parts["loss_counterfactual"].item() == pytest.approx(lc, abs=1e-4)


@pytest.mark.parametrize("tags", [True, False])
def test_causal_generation_continues_after_the_forced_tag(gpt2, tags):
    m, tok = gpt2
    exs = [EXS[1], EXS[3]]                                 # different prompt lengths: left padding is exercised
    got = student_generate(m, tok, exs, tags=tags, max_new_tokens=6, batch_size=2)
    for e, g in zip(exs, got):
        ids = tok(student_input(e, "factual", tags)).input_ids + _ids(tok, CAUSAL_SEP)
        forced = _ids(tok, " [factual]") if tags else []
        ids, new = ids + forced, []
        with torch.no_grad():                              # greedy by hand, one unpadded forward per token
            for _ in range(6):
                t = int(m(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                if t == tok.eos_token_id: break
                ids.append(t); new.append(t)
        cont = tok.decode(new, skip_special_tokens=True).strip()
        assert new and g["text"] == (f"[factual] {cont}" if tags else cont)
        assert g["text"].startswith("[factual]") == tags
        assert set(g) == {"text", "rationale", "pred"}


def _smoke_cfg(tmp_path, **kw):
    from knife_repro.scott import scott_config
    base = dict(dataset="strategyqa", teacher="tiny-gpt2", rationales="cd_wrong", counterfactual=True,
                output_dir=str(tmp_path), sim_epochs=1, n_boot=20)
    return scott_config("smoke", **{**base, **kw})


def _check_record(rec, n_test):
    import math
    m = rec["metrics"]
    assert m["n"] == n_test and 0 <= m["accuracy"] <= 1 and 0 <= m["invalid"] <= 1
    assert {"oracle_accuracy", "own_rationale_accuracy", "perturbed_accuracy"} <= set(m)
    assert ("las" in m) or any("LAS not computed" in n for n in rec["notes"])
    assert any("decoder-only student" in n for n in rec["notes"])
    losses = [h[k] for h in rec["history"] for k in ("loss", "loss_factual", "loss_counterfactual") if k in h]
    assert losses and all(math.isfinite(x) for x in losses)
    assert rec["examples"] and all(x["output"].startswith("[factual]") for x in rec["examples"])


def test_run_with_a_tiny_causal_student_end_to_end(tmp_path):
    from knife_repro.scott import run
    rec = run(_smoke_cfg(tmp_path, model="tiny-gpt2", epochs=2, max_train_samples=16, max_eval_samples=8,
                         max_target_len=24, simulator="tiny-gpt2"))
    _check_record(rec, 8)
    assert any("loss_counterfactual" in h for h in rec["history"])


@pytest.mark.slow
def test_run_with_pretrained_smollm2_student(tmp_path):
    "SmolLM2-135M as the SCOTT student: 8 questions, one optimiser step, short lengths (the pipeline, not a result)."
    from knife_repro.scott import run
    rec = run(_smoke_cfg(tmp_path, model="smollm2-135m", lr=1e-5, max_steps=1, batch_size=8, max_train_samples=8,
                         max_eval_samples=4, max_source_len=48, max_target_len=24, max_rationale_tokens=8))
    _check_record(rec, 4)


@pytest.mark.slow
def test_contrastive_decoding_with_pretrained_smollm2_teacher(smollm2):
    "SmolLM2 (Llama, its own tokenizer) as the CD teacher: batched left-padded decoding = two separate KV caches."
    m, tok = smollm2
    tpl = load_prompt("strategyqa")
    exs = [EXS[0], EXS[3]]                                 # prompts of different lengths
    P = [teacher_prompt(tpl, e, e["answer"]) for e in exs]
    N = [teacher_prompt(tpl, e, wrong_answer(e)) for e in exs]
    batched = contrastive_decode(m, tok, P, N, max_new_tokens=4, stop_ids=[])
    seq = [contrastive_decode_reference(m, tok, p, n, max_new_tokens=4, stop_ids=[]) for p, n in zip(P, N)]
    assert batched == seq and all(len(b) == 4 for b in batched)


# --- the typed config: one resolution for the notebook, the CLI and the sweeps ---------------------------

def _notebook(scale, counterfactual=True, **params):
    "What 22_scott's run cell resolves: its parameters (None: the preset's) through `scott_config`."
    from knife_repro.scott import scott_config
    nb = dict(model=None, rationales=None, alpha=None, tags=None, teacher=None)
    return scott_config(scale, **{**nb, **params}, counterfactual=counterfactual)


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_cli_and_notebook_resolve_the_same_run(scale, tmp_path):
    from knife_repro.train import config_from_args
    nb = _notebook(scale, dataset="creak", seed=3, output_dir=str(tmp_path), alpha=0.25, rationales="greedy")
    cli, _ = config_from_args(["--set", "method=scott", "dataset=creak", "seed=3", f"scale={scale}", f"output_dir={tmp_path}",
                               "alpha=0.25", "rationales=greedy", "counterfactual=true"])
    assert cli.to_dict() == nb.to_dict() and cli.run_id == nb.run_id
    assert (nb.flags["alpha"], nb.flags["rationales"], nb.flags["counterfactual"], nb.flags["teacher"]) == \
        (0.25, "greedy", True, "tiny-gpt2")
    # the scale's preset, by hand from the former SCALE_SETTINGS and the notebook's model comments
    expect = {"smoke": ("tiny-t5", "adamw", 3e-3, 30, 16, 128, 48, 0),
              "cpu": ("smollm2-135m", "adamw", 3e-5, 1, 8, 256, 128, 0),
              "paper": ("t5-3b", "adafactor", 3e-5, 10, 16, 128, 128, 2)}[scale]
    assert (nb.model, nb.optimizer, nb.lr, nb.epochs, nb.batch_size, nb.max_source_len, nb.max_target_len,
            nb.early_stopping_patience) == expect


def test_cpu_preset_is_the_shared_budget():
    from knife_repro.core import CPU_BUDGET
    c = _notebook("cpu", dataset="strategyqa")
    assert {k: getattr(c, k) for k in CPU_BUDGET} == CPU_BUDGET and c.model == "smollm2-135m"
    assert c.flags["teacher"] == "tiny-gpt2" and c.flags["max_rationale_tokens"] is None   # the scale's, at run time
    assert scott_flags(c)["max_rationale_tokens"] == 128 and scott_flags(_notebook("smoke", dataset="strategyqa"))["max_rationale_tokens"] == 16


def test_a_default_spelled_out_is_the_same_run():
    a = _notebook("smoke", dataset="strategyqa")
    assert _notebook("smoke", dataset="strategyqa", alpha=0.5, tags=True, rationales="cd_wrong").run_id == a.run_id
    assert RunConfig.from_params(**{k: v for k, v in a.to_dict().items() if k != "flags"}, counterfactual=True).run_id == a.run_id
    assert _notebook("smoke", dataset="strategyqa", counterfactual=False).run_id != a.run_id


@pytest.mark.parametrize("bad, name", [(dict(alpha=1.5), "alpha"), (dict(alpha="half"), "alpha"),
                                       (dict(rationales="sampled"), "rationales"), (dict(colour="red"), "colour"),
                                       (dict(sim_epochs=2.5), "sim_epochs"), (dict(tags="maybe"), "tags"),
                                       (dict(rationales="human", counterfactual=True), "counterfactual")])
def test_bad_own_flag_raises_config_error_naming_it(bad, name):
    from knife_repro.scott import ScottConfig
    from knife_repro.train import config_from_args
    with pytest.raises(ConfigError, match=name):
        ScottConfig.resolve(method="scott", dataset="strategyqa", **bad)
    with pytest.raises(ConfigError, match=name):
        config_from_args(["--set", "method=scott", *(f"{k}={v}" for k, v in bad.items())])
