"SCOTT: contrastive-decoding step, batched = sequential decoding, counterfactual loss mask, flag errors."
import pytest
import torch

from knife_repro.core import ConfigError, RunConfig
from knife_repro.models import load_causal, load_seq2seq
from knife_repro.scott import (ContrastiveTeacher, cd_scores, common_prefix_len, contrastive_decode, contrastive_decode_reference,
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


def _prompts(contrast="wrong"):
    "SCOTT's StrategyQA teacher prompts of EXS: (gold-answer prompts, contrast prompts: wrong answer, empty, or None)."
    tpl = load_prompt("strategyqa")
    P = [teacher_prompt(tpl, e, e["answer"]) for e in EXS]
    if contrast is None: return P, None
    return P, [teacher_prompt(tpl, e, wrong_answer(e) if contrast == "wrong" else None) for e in EXS]


def _forward_inputs(m, fn):
    "(fn(), the input_ids shape of every forward pass of `m` during it)."
    shapes = []
    hook = m.register_forward_pre_hook(lambda mod, args, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    try: return fn(), shapes
    finally: hook.remove()


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


@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("contrast", ["wrong", "empty", None])
def test_batched_equals_sequential(gpt2, contrast, share_prefix):
    m, tok = gpt2
    P, N = _prompts(contrast)
    lens = {len(tok(p, add_special_tokens=False).input_ids) for p in P}
    assert len(lens) > 1                                   # left padding is exercised
    batched = contrastive_decode(m, tok, P, N, max_new_tokens=20, stop_ids=[], share_prefix=share_prefix)
    seq = [contrastive_decode_reference(m, tok, p, None if N is None else N[i], max_new_tokens=20, stop_ids=[])
           for i, p in enumerate(P)]
    assert batched == seq and all(len(s) == 20 for s in seq)


@pytest.mark.parametrize("prune", [True, False])
@pytest.mark.parametrize("share_prefix", [True, False])
def test_batched_stops_like_sequential(gpt2, share_prefix, prune):
    m, tok = gpt2
    P, N = _prompts()
    free = contrastive_decode(m, tok, P, N, max_new_tokens=12, stop_ids=[])
    stop = [free[1][3], free[3][5]]                        # make two questions stop at different steps
    batched = contrastive_decode(m, tok, P, N, max_new_tokens=12, stop_ids=stop, share_prefix=share_prefix,
                                 prune_finished=prune)
    seq = [contrastive_decode_reference(m, tok, p, n, max_new_tokens=12, stop_ids=stop) for p, n in zip(P, N)]
    assert batched == seq
    assert len(batched[1]) <= 3 and not any(t in stop for b in batched for t in b)


def test_finished_questions_leave_the_batch(gpt2):
    "Once a question stops, the next forward passes carry its 2 rows (gold and contrast prompt) no more; same tokens."
    m, tok = gpt2
    P, N = _prompts()
    free = contrastive_decode(m, tok, P, N, max_new_tokens=12, stop_ids=[])
    stop_step = {1: 3, 3: 5}                               # question 1 stops at its 4th token, question 3 at its 6th
    stop = [free[q][k] for q, k in stop_step.items()]
    stops = [min([k for k, t in enumerate(f) if t in stop], default=12) for f in free]   # each question's stop step
    def run(prune):                                        # (tokens, rows of each decoding step's forward pass)
        out, shapes = _forward_inputs(m, lambda: contrastive_decode(m, tok, P, N, max_new_tokens=12, stop_ids=stop,
                                                                    prune_finished=prune))
        rows = [s[0] for s in shapes]
        assert rows[0] == 1 and rows[1] == 2 * len(EXS)    # the shared prefix (batch 1), then every prompt's suffix
        return out, rows[2:]
    pruned, rows = run(True)
    kept, rows_kept = run(False)
    assert pruned == kept
    # the forward pass after step i feeds both prompts of the questions that have not stopped by step i
    assert rows == [2 * sum(s > i for s in stops) for i in range(len(rows))]
    assert rows_kept == [2 * len(EXS)] * len(rows_kept) and len(rows) == len(rows_kept)
    assert min(rows) < 2 * len(EXS)


def test_common_prefix_len_by_hand():
    assert common_prefix_len([[1, 2, 3, 4, 5], [1, 2, 3, 9], [1, 2, 3, 4]], min_len=1) == 3
    assert common_prefix_len([[1, 2, 3], [1, 2, 3]], min_len=1) == 2      # every row keeps one token of its own
    assert common_prefix_len([[1, 2, 3], [7, 2, 3]], min_len=1) == 0
    assert common_prefix_len([[1, 2, 3, 4], [1, 2, 3, 5]], min_len=4) == 0  # under min_len: not worth a pass


def test_shared_prefix_is_encoded_once(gpt2):
    "The demonstrations are encoded once (batch 1); the 2B rows then encode only their own suffixes."
    m, tok = gpt2
    P, N = _prompts()
    enc = [tok(t, add_special_tokens=False).input_ids for t in P + N]
    L = common_prefix_len(enc)
    demo = tok(load_prompt("strategyqa").split("{}")[0], add_special_tokens=False).input_ids
    assert L >= len(demo) - 2                              # the shared part is (about) the demonstrations and "Q: "
    _, shapes = _forward_inputs(m, lambda: contrastive_decode(m, tok, P, N, max_new_tokens=2, stop_ids=[]))
    assert shapes[0] == (1, L)
    assert shapes[1] == (2 * len(EXS), max(len(e) for e in enc) - L)
    assert shapes[2] == (2 * len(EXS), 1)


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
    per = rec["per_example"]                  # per test question: what the paired tests of accuracy and LAS need
    assert len(per) == n_test and len({x["id"] for x in per}) == n_test
    assert {"gold", "pred", "own_pred", "perturbed_pred", "sim_x", "sim_e", "sim_xe"} <= set(per[0]) or "las" not in m
    assert sum(x["pred"] == x["gold"] for x in per) / n_test == m["accuracy"]
    assert sum(x["own_pred"] == x["gold"] for x in per) / n_test == m["own_rationale_accuracy"]
    assert sum(x["perturbed_pred"] == x["gold"] for x in per) / n_test == m["perturbed_accuracy"]
    if "las" in m:                            # the simulator's choices give the record's LAS back
        from knife_repro.faithfulness import las
        ok = [x for x in per if x["pred"] is not None]
        assert all(x["sim_xe"] is None for x in per if x["pred"] is None)
        assert abs(las(*zip(*[(x["pred"], x["sim_x"], x["sim_e"], x["sim_xe"]) for x in ok]), n_boot=1)["las"]
                   - m["las"]) < 1e-9


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
        (0.25, "greedy", True, "smollm2-135m" if scale == "cpu" else "tiny-gpt2")   # cpu: a pretrained teacher (issue 17)
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
    assert c.flags["teacher"] == "smollm2-135m" and c.flags["max_rationale_tokens"] is None   # the scale's, at run time
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


# --- fidelity flags (issue 17): each the authors' behaviour by default ---------------------------

from types import SimpleNamespace

from knife_repro.scott import (CounterfactualPairs, decoding_prompts, explanation_rows, open_teacher_cache,
                               stop_token_ids, teacher_cache_path, teacher_key, teacher_rationales)


class MarkovLM(torch.nn.Module):
    "A stand-in causal LM whose next token is NEXT[last token] (logit 10, all others 0), with the HF call signature."
    def __init__(self, nxt: dict, vocab: int, default: int):
        super().__init__()
        table = torch.full((vocab,), default, dtype=torch.long)
        for a, b in nxt.items(): table[a] = b
        self.table, self.vocab = table, vocab
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(n_positions=4096, _name_or_path="markov")

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True,
                logits_to_keep=0):
        logits = torch.nn.functional.one_hot(self.table[input_ids], self.vocab).float() * 10
        return SimpleNamespace(logits=logits, past_key_values=None)


@pytest.fixture(scope="module")
def markov(gpt2):
    "A Markov LM on tiny-gpt2's tokenizer: after the prompt it writes w1, EOS, w2, then the blank-line separator."
    _, tok = gpt2
    prompt = "Q: Would a pear sink?\nA: The answer is no."
    last = tok(prompt, add_special_tokens=False).input_ids[-1]
    sep, eos = stop_token_ids(tok)[0], tok.eos_token_id
    w1, w2, filler = (tok(" " + w, add_special_tokens=False).input_ids[0] for w in ("pears", "float", "zz"))
    assert len({last, sep, eos, w1, w2, filler}) == 6 and stop_token_ids(tok, eos=True) == sorted({sep, eos})
    m = MarkovLM({last: w1, w1: eos, eos: w2, w2: sep}, len(tok), filler)
    return m, tok, prompt, (w1, eos, w2, sep)


@pytest.mark.parametrize("contrast", [False, True])
def test_teacher_decoding_runs_past_eos_like_the_official_loop(markov, contrast):
    m, tok, prompt, (w1, eos, w2, sep) = markov
    N = [prompt.replace("no.", "yes.")] if contrast else None
    authors = contrastive_decode(m, tok, [prompt], N, max_new_tokens=10)[0]
    ours = contrastive_decode(m, tok, [prompt], N, max_new_tokens=10, stop_at_eos=True)[0]
    assert authors == [w1, eos, w2]                        # EOS is decoded past; the separator stops
    assert ours == [w1]                                    # stop_at_eos: EOS stops
    assert contrastive_decode(m, tok, [prompt], N, max_new_tokens=2)[0] == [w1, eos]   # the length limit
    for flag, want in ((False, authors), (True, ours)):   # the one-question reference follows the same rule
        ref = contrastive_decode_reference(m, tok, prompt, None if N is None else N[0], max_new_tokens=10, stop_at_eos=flag)
        assert ref == want
    t = ContrastiveTeacher(m, tok, "strategyqa", "greedy")
    assert t.text(authors) == tok.decode([w1, w2]).strip()   # EOS dropped from the text, as the official decode


def test_stop_at_eos_flag_reaches_the_teacher(markov, tmp_path):
    m, tok, _, (w1, eos, w2, sep) = markov
    ex = dict(id="p", question="Would a pear sink?", choices=["yes", "no"], answer=1)
    got = {}
    for flag in (False, True):
        path = teacher_cache_path(tmp_path, "strategyqa", "markov", "greedy", stop_at_eos=flag)
        r, info = teacher_rationales([ex], lambda: (m, tok), path, "strategyqa", "greedy", stop_at_eos=flag)
        got[flag] = (r["p"], info["records"]["p"]["n_tokens"])
    assert got[False] == (tok.decode([w1, w2]).strip(), 3) and got[True] == (tok.decode([w1]).strip(), 1)
    assert teacher_cache_path(tmp_path, "d", "t", "greedy", stop_at_eos=True) != teacher_cache_path(tmp_path, "d", "t", "greedy")


def test_counterfactual_pairing_is_redrawn_every_epoch():
    import random
    fact = [{"id": i} for i in range(6)]
    cf = [{"id": 10 + i} for i in range(6)]
    pairs = lambda rows: [(r["id"], r["cf_id"]) for r in rows]
    cp = CounterfactualPairs(fact, cf, seed=3)
    seen = []
    for e in range(4):
        cp.set_epoch(e)
        perm = list(range(6)); random.Random(3 + 1_000_003 * e).shuffle(perm)   # the stated rule: seed + 1_000_003·epoch
        assert pairs(cp) == [(i, 10 + perm[i]) for i in range(6)]
        assert sorted(c for _, c in pairs(cp)) == list(range(10, 16))            # every counterfactual once per epoch
        seen.append(pairs(cp))
    assert len({tuple(p) for p in seen}) > 1
    fixed = CounterfactualPairs(fact, cf, seed=3, resample=False)
    for e in range(4):
        fixed.set_epoch(e)
        assert pairs(fixed) == seen[0] == pairs(pair_counterfactuals(fact, cf, 3))   # epoch 0's pairing, the old one


@pytest.mark.parametrize("resample", [True, False])
def test_training_engine_redraws_the_pairing_each_epoch(resample):
    "Through `train`: the (factual, counterfactual) pairs the loss sees change from epoch to epoch only with resampling."
    from knife_repro.training import TrainOptions, train
    fact = [{"input_ids": [1, 2], "labels": [1], "fid": i} for i in range(8)]
    cf = [{"input_ids": [3], "labels": [2], "fid": 100 + i} for i in range(8)]
    seen = []
    model = torch.nn.Linear(1, 1)
    def loss_fn(models, batch):
        seen.append(list(zip(batch["fid"].tolist(), batch["cf_fid"].tolist())))
        return (models["m"].weight ** 2).sum(), {}
    cfg = RunConfig(method="x", dataset="toy", seed=0, scale="smoke", epochs=3, batch_size=4, lr=1e-3)
    train({"m": model}, loss_fn, CounterfactualPairs(fact, cf, seed=0, resample=resample), cfg,
          opts=TrainOptions(progress=False))
    epochs = [sorted(p for b in seen[k:k + 2] for p in b) for k in (0, 2, 4)]   # 2 batches per epoch
    assert all(sorted(f for f, _ in ep) == list(range(8)) for ep in epochs)
    assert all(sorted(c for _, c in ep) == list(range(100, 108)) for ep in epochs)
    if resample: assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    else: assert epochs[0] == epochs[1] == epochs[2]


def test_up_to_five_explanations_per_question():
    exs = [dict(id=i, question=i) for i in "abcd"]
    R = {"a": [f"r{k}" for k in range(1, 8)], "b": ["s1"], "c": [], "d": ["t1", "t2"]}
    rows = lambda k: [(e["id"], r) for e, r in explanation_rows(exs, R, k)]
    assert rows(5) == [("a", "r1"), ("a", "r2"), ("a", "r3"), ("a", "r4"), ("a", "r5"), ("b", "s1"), ("d", "t1"), ("d", "t2")]
    assert rows(1) == [("a", "r1"), ("b", "s1"), ("d", "t1")]
    with pytest.raises(ConfigError, match="max_explanations"):
        explanation_rows(exs, R, 0)
    from knife_repro.scott import ScottConfig, _dataset_rationales
    with pytest.raises(ConfigError, match="max_explanations"):
        ScottConfig.resolve(method="scott", dataset="strategyqa", max_explanations=0)
    gpt3 = _dataset_rationales([{"id": "q", "llm_rationales": ["x1", " ", "x2", "x3", "x4", "x5", "x6"]}], "gpt3")
    assert gpt3 == {"q": ["x1", "x2", "x3", "x4", "x5", "x6"]}   # every non-empty one; the run keeps the first 5


def test_fidelity_flags_default_to_the_authors():
    from knife_repro.scott import FLAGS
    assert (FLAGS["stop_at_eos"], FLAGS["cf_resample"], FLAGS["max_explanations"]) == (False, True, 5)
    f = scott_flags(RunConfig.from_params(method="scott", dataset="strategyqa", stop_at_eos="true", cf_resample="false"))
    assert (f["stop_at_eos"], f["cf_resample"]) == (True, False)


def test_scott_faithfulness_is_the_shared_implementation(monkeypatch):
    "SCOTT keeps no LAS or perturbation code of its own: the student probes and the teacher side call `faithfulness`."
    import knife_repro.faithfulness as fa
    import knife_repro.scott as sc
    assert sc.rationale_faithfulness is fa.rationale_faithfulness
    own = [n for n, o in vars(sc).items() if callable(o) and getattr(o, "__module__", "") == sc.__name__]
    assert not [n for n in own if "las" in n.lower() or "perturb" in n.lower() or "simulat" in n.lower()], own
    calls = []
    def fake_las_eval(train_rows, test_rows, cfg, model, n_boot, **kw):
        calls.append((train_rows, test_rows, model, n_boot, kw))
        return {"leak_rate": 0.25, "las": 10.0, "las_ci_low": -5.0, "las_ci_high": 20.0, "sim_xe_accuracy": 0.5, "n": 2}
    monkeypatch.setattr(fa, "las_eval", fake_las_eval)
    tr = [dict(id="a", question="Qa", choices=["yes", "no"], answer=0)]
    te = [dict(id="b", question="Qb", choices=["yes", "no"], answer=1), dict(id="c", question="Qc", choices=["yes", "no"], answer=0)]
    f = dict(simulator="sim", n_boot=7, sim_epochs=2, sim_lr=0.1)
    assert sc.gold_support is fa.gold_support
    m = sc.teacher_side_metrics(RunConfig(method="scott_teacher", dataset="strategyqa"), tr, te, {"a": ["Ra"]},
                                {"b": ["Rb"], "c": ["Rc"]}, {"b": {"n_tokens": 4, "hit_limit": False},
                                                             "c": {"n_tokens": 8, "hit_limit": True}}, f)
    (trows, terows, model, n_boot, kw), = calls
    assert [r["y_hat"] for r in trows + terows] == [0, 1, 0]          # the target is the gold label
    assert [r["rationale"] for r in terows] == ["Rb", "Rc"] and (model, n_boot, kw) == ("sim", 7, {"epochs": 2, "lr": 0.1})
    assert m == {"rationale_alone_gold": 0.25, "las_gold": 10.0, "las_gold_ci_low": -5.0, "las_gold_ci_high": 20.0,
                 "sim_xe_gold": 0.5, "n": 2, "mean_tokens": 6.0, "hit_limit": 0.5}


# --- the teacher-rationale cache -----------------------------------------------------------------------

def test_teacher_cache_key_is_the_prompts_not_the_seed_or_split():
    tpl = load_prompt("strategyqa")
    ex = EXS[0]
    k = lambda d, seed=0, t=tpl, e=ex, cf=False: teacher_key(*decoding_prompts(t, e, d, cf, seed))
    assert k("cd_wrong") == k("cd_wrong", seed=5)                       # binary: the wrong answer is the flip
    assert len({k("greedy"), k("cd_empty"), k("cd_wrong"), k("cd_wrong", cf=True)}) == 4
    assert k("greedy", t=tpl.replace("Q:", "Question:")) != k("greedy")  # another template: another key
    assert k("greedy", e={**ex, "question": "Is a pear a fruit?"}) != k("greedy")
    mc = dict(id="m", question="Pick", choices=list("uvwxy"), answer=2)
    assert len({k("cd_wrong", seed=s, e=mc) for s in range(20)}) > 1   # multiple choice: the seeded wrong answer is in the key


def test_teacher_cache_resumes_and_rebuilds_when_corrupt(markov, tmp_path):
    m, tok, _, _ = markov
    exs = [dict(id=f"q{i}", question=f"Question number {i}?", choices=["yes", "no"], answer=i % 2) for i in range(5)]
    path = teacher_cache_path(tmp_path, "strategyqa", "markov", "cd_wrong")
    calls = []
    class Stop(Exception): pass
    def crashing():                                        # the run dies after its first chunk was written
        calls.append(1)
        class Dying(MarkovLM):
            n = 0
            def forward(self, *a, **k):
                Dying.n += 1
                if Dying.n > 2: raise Stop
                return super().forward(*a, **k)
        d = Dying({}, len(tok), 7); d.table = m.table
        return d, tok
    with pytest.raises(Stop):
        teacher_rationales(exs, crashing, path, "strategyqa", "cd_wrong", max_new_tokens=1, batch_size=2, chunk=2)
    assert len(path.read_text().splitlines()) == 2         # the first chunk (2 questions) was kept
    full, info = teacher_rationales(exs, lambda: (m, tok), path, "strategyqa", "cd_wrong", max_new_tokens=1, chunk=2)
    assert (info["decoded"], info["cached"]) == (3, 2) and len(full) == 5
    with open(path, "ab") as fh: fh.write(b'{"id": "torn')   # a torn last line: repaired silently
    again, info = teacher_rationales(exs, lambda: pytest.fail("no decoding needed"), path, "strategyqa", "cd_wrong",
                                     max_new_tokens=1)
    assert again == full and info["notes"] == []
    lines = path.read_text().splitlines()[:5]              # the 5 records (the torn tail is still on disk)
    path.write_text("\n".join(lines[:2] + ["garbage", '{"id": "x", "rationales": ["r"]}'] + lines[2:]) + "\n")
    with pytest.raises(Exception):
        from knife_repro.rationales import RationaleCache
        RationaleCache(path)                               # the damage is real
    cache, notes = open_teacher_cache(path)
    assert len(cache) == 5 and "corrupt" in notes[0] and path.with_name(path.name + ".corrupt").exists()
    path.write_text("\n".join(lines[:2] + ['{"id": "x", "rationales": ["r"], "meta": {}}'] + lines[2:]) + "\n")
    fixed, info = teacher_rationales(exs, lambda: pytest.fail("no decoding needed"), path, "strategyqa", "cd_wrong",
                                     max_new_tokens=1)
    assert fixed == full and "not teacher rationales" in info["notes"][0]


def test_teacher_side_decodes_only_the_simulators_training_questions(tmp_path, monkeypatch):
    "scott_teacher decodes (and trains the simulator on) `faithfulness.las_subset` of the training questions, every test one."
    from knife_repro import scott
    from knife_repro.faithfulness import las_subset
    seen = []
    def fake_teacher(f, cfg, examples, load_teacher, decoding=None, counterfactual=False):
        seen.append((decoding, [e["id"] for e in examples]))
        return ({e["id"]: ["r"] for e in examples},
                {"notes": [], "decoded": len(examples), "cached": 0, "seconds": 0.0,
                 "records": {e["id"]: {"n_tokens": 1, "hit_limit": False} for e in examples}})
    trained = []
    def fake_metrics(cfg, train, test, R_train, R_test, meta, f):
        trained.append([e["id"] for e in train])
        return {"las_gold": 0.0}
    monkeypatch.setattr(scott, "_teacher", fake_teacher)
    monkeypatch.setattr(scott, "teacher_side_metrics", fake_metrics)
    cfg = scott.ScottConfig.resolve(method="scott_teacher", scale="smoke", dataset="strategyqa", seed=1,
                                    max_train_samples=100, max_eval_samples=8, output_dir=str(tmp_path))
    scott.run(cfg)
    dd = scott._splits(cfg, __import__("knife_repro.data", fromlist=["load"]).load("strategyqa"))
    want = [e["id"] for e in las_subset(dd[2], cfg)]
    assert len(dd[2]) == 100 and len(want) == 64                    # smoke: the simulator learns from 64 of the 100
    assert [ids for d, ids in seen[0::2]] == [want] * 3 and trained == [want] * 3
    assert all(len(ids) == 8 for d, ids in seen[1::2])             # every reported question


def test_teacher_table_from_records():
    from knife_repro.scott import teacher_examples, teacher_table
    def rec(teacher, las_cd):
        m = {"n": 10}
        for d, alone, las, tok in (("greedy", 0.5, 2.0, 30.0), ("cd_empty", 0.6, 4.0, 40.0), ("cd_wrong", 0.7, las_cd, 50.0)):
            m.update({f"{d}_rationale_alone_gold": alone, f"{d}_las_gold": las, f"{d}_las_gold_ci_low": las - 1,
                      f"{d}_las_gold_ci_high": las + 1, f"{d}_mean_tokens": tok, f"{d}_hit_limit": 0.1})
        return {"config": {"method": "scott_teacher", "dataset": "creak", "report_split": "validation",
                           "flags": {"teacher": teacher}}, "metrics": m,
                "examples": [{"id": "1", "question": "Q" * 300, "gold": 1, "greedy": "g", "cd_empty": "e", "cd_wrong": "w"}]}
    t = teacher_table([rec("gemma3-270m", 6.0), rec("smollm2-135m", 8.0), {"config": {"method": "scott"}, "metrics": {}}])
    assert list(t.decoding) == ["greedy", "cd_empty", "cd_wrong"] * 2 and list(t.teacher[:1]) == ["gemma3-270m"]
    row = t[(t.teacher == "smollm2-135m") & (t.decoding == "cd_wrong")].iloc[0]
    assert (row["rationale alone → gold (%)"], row["LAS w.r.t. gold"], row["mean length (tokens)"],
            row["cut at the limit (%)"], row["LAS CI"]) == (70.0, 8.0, 50.0, 10.0, "[7.0, 9.0]")
    ex = teacher_examples(rec("x", 1.0), k=1, width=20)
    assert list(ex.columns) == ["question", "gold", "greedy", "cd_empty", "cd_wrong"] and len(ex.question[0]) == 20


def test_teacher_cache_waits_for_another_process(markov, tmp_path):
    "A second process on the same cache waits for the lock, then decodes nothing the first one already wrote."
    import threading
    from filelock import FileLock
    m, tok, _, _ = markov
    exs = [dict(id=f"q{i}", question=f"Question number {i}?", choices=["yes", "no"], answer=i % 2) for i in range(3)]
    path = teacher_cache_path(tmp_path, "strategyqa", "markov", "greedy")
    out = {}
    lock = FileLock(str(path) + ".lock"); lock.acquire()   # "another process" holds the cache
    t = threading.Thread(target=lambda: out.update(r=teacher_rationales(exs, lambda: (m, tok), path, "strategyqa",
                                                                        "greedy", max_new_tokens=2)))
    t.start(); t.join(0.5)
    assert t.is_alive() and not path.exists()              # waiting, nothing written
    from knife_repro.rationales import RationaleCache      # meanwhile the other process writes two questions
    other = RationaleCache(path)
    tpl = load_prompt("strategyqa")
    for e in exs[:2]:
        other.add(teacher_key(*decoding_prompts(tpl, e, "greedy")), ["by the other"], n_tokens=1, hit_limit=False)
    lock.release(); t.join(10)
    rats, info = out["r"]
    assert not t.is_alive() and (info["decoded"], info["cached"]) == (1, 2)   # it read the cache after the wait
    assert rats["q0"] == rats["q1"] == "by the other" != rats["q2"]


# --- the cpu-scale tables, from hand-made records -------------------------------------------------------

def _scott_records(tmp_path):
    "StrategyQA, 4 test questions (gold 0, 1, 0, 1): greedy-standard and CD-wrong +CF students x seeds 0, 1, a teacher-side"
    " record, and records the tables must leave out (validation split, smoke scale)."
    from knife_repro.core import write_run_record
    from knife_repro.scott import ScottConfig, scott_config
    golds = [0, 1, 0, 1]
    cd_sims = [(1, 0, 0), (1, 0, 1), (1, 1, 0), (0, 0, 1)]        # (sim_x, sim_e, sim_xe) per question
    def student(rationales, cf, seed, preds, las_v, own, pert, **kw):
        cfg = scott_config(**{"scale": "cpu", **kw}, dataset="strategyqa", seed=seed, rationales=rationales,
                           counterfactual=cf, output_dir=str(tmp_path))
        sims = cd_sims if cf else [(x, e, x) for x, e, _ in cd_sims]   # greedy: sim(x,e) = sim(x), LAS 0
        per = [{"id": f"q{i}", "gold": g, "pred": p, "own_pred": g, "perturbed_pred": 1 - g,
                **dict(zip(("sim_x", "sim_e", "sim_xe"), s if p is not None else (None,) * 3))}
               for i, (g, p, s) in enumerate(zip(golds, preds, sims))]
        acc = sum(p == g for p, g in zip(preds, golds)) / 4
        write_run_record(cfg, {"accuracy": acc, "accuracy_ci_low": acc - 0.25, "accuracy_ci_high": 1.0,
                               "las": las_v, "las_ci_low": las_v - 10, "las_ci_high": las_v + 10, "n": 4,
                               "own_rationale_accuracy": own, "perturbed_accuracy": pert,
                               "invalid": sum(p is None for p in preds) / 4},
                         timings={"teacher_s": 60.0, "train_s": 540.0 + 60 * seed, "tokens_per_s": 50.0},
                         flags_resolved=dict(cfg.flags), per_example=per)
    student("greedy", False, 0, [0, 1, 1, None], 0.0, 0.5, 0.5)
    student("greedy", False, 1, [0, 1, 0, 0], 0.0, 0.5, 0.5)
    student("cd_wrong", True, 0, [0, 1, 0, 1], 83.3, 0.9, 0.5)
    student("cd_wrong", True, 1, [0, 1, 0, 1], 80.0, 0.8, 0.6)
    student("cd_wrong", True, 2, [0, 0, 0, 0], 0.0, 0.8, 0.6, report_split="validation")
    student("cd_wrong", True, 0, [0, 0, 0, 0], 0.0, 0.8, 0.6, scale="smoke", model="tiny-t5", teacher="tiny-gpt2")
    tcfg = ScottConfig.resolve(method="scott_teacher", scale="cpu", dataset="strategyqa", seed=0, output_dir=str(tmp_path))
    m = {"n": 4}
    for d, alone, l in (("greedy", 0.5, 2.0), ("cd_empty", 0.75, 4.0), ("cd_wrong", 1.0, 6.0)):
        m.update({f"{d}_rationale_alone_gold": alone, f"{d}_las_gold": l, f"{d}_las_gold_ci_low": l - 1,
                  f"{d}_las_gold_ci_high": l + 1, f"{d}_mean_tokens": 40.0, f"{d}_hit_limit": 0.0})
    write_run_record(tcfg, m, examples=[])
    return tmp_path / "runs"


def test_student_table_mean_std_and_paired_tests(tmp_path):
    import math
    from knife_repro import scott
    runs = _scott_records(tmp_path)
    recs = scott.cpu_records(runs)
    assert len(recs) == 4 and len(scott.cpu_records(runs, method="scott_teacher")) == 1
    t = scott.student_table(runs).set_index(["decoding", "objective"])
    g, c = t.loc[("greedy", "standard")], t.loc[("CD-wrong", "+counterfactual")]
    # by hand: greedy 2/4 and 3/4 -> 0.625 ± 0.125·√2; invalid 1/4 and 0 -> 0.125; CD-wrong LAS 83.3 and 80 -> 81.65 ± 1.65·√2
    assert math.isclose(g.accuracy, 0.625) and math.isclose(g.accuracy_std, 0.125 * math.sqrt(2)) and g.n_seeds == 2
    assert math.isclose(g.invalid, 0.125) and math.isclose(g.accuracy_ci_low, 0.375) and g.seeds == "0,1"
    assert math.isclose(c.las, 81.65) and math.isclose(c.las_std, 1.65 * math.sqrt(2)) and math.isclose(c.las_ci_high, 91.65)
    assert math.isclose(c["drop"], 0.3) and math.isclose(c.own_rationale_accuracy, 0.85) and c.accuracy == 1.0
    assert math.isclose(g.minutes_mean, 10.5) and math.isclose(g.minutes_max, 11.0)
    tests = {p["metric"]: p for p in scott.paired_tests(recs)}
    a = tests["accuracy"]   # seed 0: CD right on q2, q3 where greedy is not; seed 1: on q3 -> 3 discordant, all for CD
    assert (a["only_a"], a["only_b"], a["n_seeds"], a["n_questions"]) == (3, 0, 2, 4) and math.isclose(a["diff"], 3 / 8)
    l = tests["las"]        # CD: q0 leaks with Δ 1; q1-q3 do not, Δ 0, 1, 1 -> (1 + 2/3) / 2; greedy: sim(x,e) = sim(x) -> 0
    assert (l["n_seeds"], l["n_questions"]) == (2, 4) and math.isclose(l["las_a"], 250 / 3) and l["las_b"] == 0
    assert math.isclose(l["diff"], 250 / 3) and l["A"] == "CD-wrong +CF" and l["B"] == "greedy standard"


def test_scott_readme_block_and_empty_case(tmp_path):
    from knife_repro import scott
    assert scott.cpu_readme_block(tmp_path) == "No committed `cpu`-scale SCOTT records yet."
    assert scott.student_table(tmp_path).empty and scott.paired_tests([]) == [] and scott.paper_beside(tmp_path).empty
    block = scott.cpu_readme_block(_scott_records(tmp_path))
    assert "| strategyqa | smollm2-135m | cd_wrong | 4 | 100.0 | 6.0 [5.0, 7.0] | 40.0 |" in block
    assert "| strategyqa | greedy | standard | 62.5 ± 17.7 | [37.5, 100.0] | 0.0 ± 0.0 | [-10.0, 10.0] | 50.0 | 50.0 | 0.0 | 12.5 | 0,1 | 10.5, 11.0 |" in block
    assert "| strategyqa | CD-wrong | +counterfactual | 100.0 ± 0.0 | [75.0, 100.0] | 81.7 ± 2.3 |" in block
    assert "* strategyqa, accuracy: CD-wrong +CF − greedy standard = +37.5 [" in block and "p = 0.25" in block
    assert "* strategyqa, las: CD-wrong +CF − greedy standard = +83.3 [" in block
    # the reproduction's StrategyQA cells (CD-wrong +CF, alpha 0.5) beside ours, sizes on both sides
    assert "strategyqa, accuracy: ours 100.0 ± 0.0 (student smollm2-135m" in block and "vs 55.9 (student t5-3b (3B)" in block
    assert "perturbed_accuracy: ours 55.0 ± 7.1" in block and "teacher EleutherAI/gpt-neox-20b (20B)" in block
    assert "| 85.0 | 55.0 | 30.0 | 0.0 | 0,1 |" in block                  # own 0.9, 0.8; perturbed 0.5, 0.6: drop 30 points
    assert "SCOTT's: teacher EleutherAI/gpt-neox-20b (20B), student t5-3b (3B). Built from 5 committed records" in block


def test_run_records_per_example_and_inference_tokens(tmp_path):
    "Every test question's prediction (paired tests); tokens generated per question: the text after the forced tag."
    from knife_repro.tables import correctness
    from knife_repro.models import load_causal
    from knife_repro.scott import run
    rec = run(_smoke_cfg(tmp_path, model="tiny-gpt2", epochs=1, max_train_samples=8, max_eval_samples=6,
                         max_target_len=24, simulator="tiny-gpt2"))
    ex = rec["per_example"]
    assert len(ex) == 6 == rec["metrics"]["n"] and all(e["generation"].startswith("[factual]") for e in ex)
    assert sum(correctness(rec).values()) / 6 == pytest.approx(rec["metrics"]["accuracy"])
    _, tok = load_causal("tiny-gpt2", seed=0)
    want = sum(len(tok(e["generation"][len("[factual]"):].strip(), add_special_tokens=False).input_ids) for e in ex) / 6
    assert rec["metrics"]["gen_tokens_per_question"] == pytest.approx(want)
    assert rec["metrics"]["scored_tokens_per_question"] == 0.0


def test_capped_test_split_is_the_same_for_every_seed():
    "CREAK's cpu test cap (a seeded 500): every seed scores the same questions, so the paired tests pool seeds; training differs."
    from knife_repro import scott
    from knife_repro.data import load
    dd = load("strategyqa")
    cut = lambda seed: scott._splits(scott.ScottConfig.resolve(method="scott", scale="cpu", dataset="strategyqa", seed=seed,
                                                               max_eval_samples=20, max_train_samples=50), dd)
    (_, _, tr0, _, te0, _), (_, _, tr1, _, te1, _) = cut(0), cut(1)
    assert [e["id"] for e in te0] == [e["id"] for e in te1] and len(te0) == 20
    assert [e["id"] for e in tr0] != [e["id"] for e in tr1]
