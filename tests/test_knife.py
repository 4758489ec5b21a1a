"KNIFE: input alignment, the teacher's bottleneck (T5 cross-attention; decoder-only 4D mask), KD losses, gradients, the teacher-state cache, runs."
import copy

import pytest
import torch

from knife_repro.core import ConfigError, RunConfig
from knife_repro.knife import (ChoiceScorer, choice_collate, choice_kl, cross_mask_of, cached_teacher_states,
                               compute_teacher_states, encode_choices, make_student_loss, make_teacher_loss,
                               predict_choices, resolve_flags, student_forward, teacher_cache_path, teacher_config,
                               teacher_forward, DEFAULTS, TEACHER_FLAGS)
from knife_repro.models import load_seq2seq

EXS = [{"id": "1", "question": "Is 41 bigger than 17?", "choices": ["yes", "no"], "answer": 0,
        "rationale": "41 is more than 17, and bigger means more.", "llm_rationales": [], "context": ""},
       {"id": "2", "question": "Which one melts?", "choices": ["ice cube", "a rock", "glass", "steel bar"], "answer": 0,
        "rationale": "ice melts when warm", "llm_rationales": [], "context": ""}]


@pytest.fixture(scope="module")
def tiny():
    t5, tok = load_seq2seq("tiny-t5", seed=1)
    return t5, tok


def batch_of(tok, exs=EXS, **kw):
    return choice_collate([encode_choices(tok, e, **kw) for e in exs], pad_id=tok.pad_token_id)


def frozen(scorer):
    for p in scorer.parameters(): p.requires_grad_(False)
    return scorer.eval()


def test_teacher_input_is_the_student_input_then_the_ftr(tiny):
    _, tok = tiny
    for e in EXS:
        enc = encode_choices(tok, e)
        r = tok("rationale: " + e["rationale"]).input_ids
        for x, tx in zip(enc["input_ids"], enc["teacher_input_ids"]):
            assert tx[:len(x)] == x and tx[len(x):] == r
    # a long FTR is truncated, never the task input
    long = dict(EXS[0], rationale="word " * 500)
    enc = encode_choices(tok, long, max_source_len=40)
    for x, tx in zip(enc["input_ids"], enc["teacher_input_ids"]):
        assert len(tx) == 40 and tx[:len(x)] == x
    b = batch_of(tok)
    assert b["choice_mask"].tolist() == [[True, True, False, False], [True] * 4]
    assert b["input_ids"].shape[0] == 6 and (b["task_mask"].sum(1) == b["attention_mask"].sum(1)).all()


def test_cross_attention_on_ftr_positions_is_exactly_zero(tiny):
    t5, tok = tiny
    t5 = copy.deepcopy(t5).eval()
    t5.set_attn_implementation("eager")
    b = batch_of(tok)
    ftr = (b["teacher_attention_mask"] - b["task_mask"]).bool()
    assert ftr.sum() > 0
    with torch.no_grad():
        enc = t5.get_encoder()(input_ids=b["teacher_input_ids"], attention_mask=b["teacher_attention_mask"]).last_hidden_state
        for bottleneck in (True, False):
            att = t5(encoder_outputs=(enc,), attention_mask=cross_mask_of(b, bottleneck),
                     decoder_input_ids=t5._shift_right(b["labels"]), output_attentions=True).cross_attentions
            on_ftr = max(float((a * ftr[:, None, None, :]).abs().max()) for a in att)
            if bottleneck:
                assert on_ftr == 0.0
                task = b["task_mask"].bool()[:, None, None, :]
                assert all(torch.allclose((a * task).sum(-1), torch.ones(())) for a in att)
            else:
                assert on_ftr > 0          # the mask, not the inputs, is what hides the FTR


def test_our_decoder_call_equals_the_hf_encoder_outputs_path(tiny):
    t5, tok = tiny
    T = frozen(ChoiceScorer(copy.deepcopy(t5)))
    b = batch_of(tok)
    with torch.no_grad():
        out = teacher_forward(T, b)
        hf = T.t5(encoder_outputs=(out["enc"],), attention_mask=cross_mask_of(b), labels=b["labels"],
                  decoder_attention_mask=(b["labels"] != -100).long())
    assert torch.allclose(hf.logits, out["logits"], atol=1e-5)


def test_teacher_output_ignores_ftr_states_but_not_task_tokens(tiny):
    t5, tok = tiny
    T = frozen(ChoiceScorer(copy.deepcopy(t5)))
    b = batch_of(tok)
    ftr = (b["teacher_attention_mask"] - b["task_mask"]).bool()
    with torch.no_grad():
        out = teacher_forward(T, b)
        enc2 = out["enc"].clone(); enc2[ftr] = torch.randn_like(enc2[ftr]) * 50
        assert torch.equal(T.decode(enc2, cross_mask_of(b), b["labels"])["rows"], out["rows"])
        # without the bottleneck the same replacement does change the output
        plain = T.decode(out["enc"], cross_mask_of(b, False), b["labels"])["rows"]
        assert not torch.allclose(T.decode(enc2, cross_mask_of(b, False), b["labels"])["rows"], plain)
        # a changed task-input token changes the output
        b2 = dict(b, teacher_input_ids=b["teacher_input_ids"].clone()); b2["teacher_input_ids"][:, 1] += 1
        assert not torch.allclose(teacher_forward(T, b2)["rows"], out["rows"])
        # a changed FTR token changes the task-input states (the encoder reads it), so the output
        b3 = dict(b, teacher_input_ids=b["teacher_input_ids"].clone())
        b3["teacher_input_ids"][ftr] = (b3["teacher_input_ids"][ftr] + 7) % 8000 + 4
        assert not torch.allclose(teacher_forward(T, b3)["rows"], out["rows"])


def test_kd_in_compares_exactly_the_task_input_positions(tiny):
    t5, tok = tiny
    S = ChoiceScorer(copy.deepcopy(t5)).eval()
    b = batch_of(tok)
    with torch.no_grad():
        s = student_forward(S, b)
    m = b["attention_mask"].bool()
    L = m.shape[1]
    t_enc = torch.zeros(b["teacher_input_ids"].shape + (s["enc"].shape[-1],))
    t_enc[:, :L][m] = s["enc"][m]                          # teacher states = student states on the task span
    t_enc[~b["task_mask"].bool()] = 1e3                   # anything at FTR and pad positions
    base = dict(b, t_enc=t_enc, t_dec=s["dec"], t_logits=s["choice_logits"])
    with torch.no_grad():
        _, logs = make_student_loss("in")({"student": S}, base)
        assert logs["kd_in"] == 0                          # FTR positions are not compared
        t2 = t_enc.clone(); row, pos = 1, int(m[1].sum()) - 1; t2[row, pos] += 1.0   # last task token of row 1
        _, logs = make_student_loss("in")({"student": S}, dict(base, t_enc=t2))
    d = s["enc"].shape[-1]
    assert logs["kd_in"] == pytest.approx(d / (d * m.sum().item()), rel=1e-4)


@pytest.mark.parametrize("kd_out", ["hidden", "kl"])
def test_kd_losses_vanish_when_student_is_teacher(tiny, kd_out):
    t5, tok = tiny
    T = frozen(ChoiceScorer(copy.deepcopy(t5)))
    S = ChoiceScorer(copy.deepcopy(t5)).eval()
    same = batch_of(tok, ftr=False)
    assert torch.equal(same["teacher_input_ids"], same["input_ids"])
    loss_fn = make_student_loss("in+out", kd_out=kd_out)
    with torch.no_grad():
        _, logs = loss_fn({"student": S, "teacher": T}, same)
        assert logs["kd_in"] == 0 and logs["kd_out"] == 0
        _, logs = loss_fn({"student": S, "teacher": T}, batch_of(tok))   # the FTR makes them differ
        assert logs["kd_in"] > 0 and logs["kd_out"] > 0


def test_gradients_reach_only_the_student(tiny):
    t5, tok = tiny
    T = frozen(ChoiceScorer(copy.deepcopy(t5)))
    S = ChoiceScorer(copy.deepcopy(t5), score="head")
    loss, logs = make_student_loss("in+out", task_weight=0.5)({"student": S, "teacher": T}, batch_of(tok))
    loss.backward()
    assert set(logs) == {"kd_in", "kd_out", "task"}
    assert all(p.grad is None for p in T.parameters())
    assert S.head.weight.grad is not None and S.head.weight.grad.abs().sum() > 0
    assert S.t5.encoder.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0


def test_teacher_loss_trains_the_teacher(tiny):
    t5, tok = tiny
    T = ChoiceScorer(copy.deepcopy(t5))
    loss, _ = make_teacher_loss()({"teacher": T}, batch_of(tok))
    loss.backward()
    assert T.t5.shared.weight.grad.abs().sum() > 0


def test_cached_states_equal_recomputed_and_are_reused(tiny, tmp_path):
    t5, tok = tiny
    T = frozen(ChoiceScorer(copy.deepcopy(t5)))
    rows = [encode_choices(tok, e) for e in EXS * 3]
    st, hit = cached_teacher_states(T, rows, root=tmp_path, batch_size=4)
    st2, hit2 = cached_teacher_states(T, rows, root=tmp_path, batch_size=4)
    assert (hit, hit2) == (False, True) and len(list(tmp_path.iterdir())) == 1
    b = choice_collate([{**r, **s} for r, s in zip(rows[:2], st2[:2])], pad_id=tok.pad_token_id)
    with torch.no_grad(): live = teacher_forward(T, b)
    m = b["attention_mask"]
    assert torch.allclose(b["t_enc"], live["enc"][:, :m.shape[1]] * m[..., None], atol=1e-5)
    dm = (b["labels"] != -100)
    assert torch.allclose(b["t_dec"], live["dec"] * dm[..., None], atol=1e-5)
    assert torch.allclose(b["t_logits"], live["choice_logits"], atol=1e-4)
    # the student loss is the same from cached and from live teacher states
    S = ChoiceScorer(copy.deepcopy(t5)).eval()
    plain = {k: v for k, v in b.items() if not k.startswith("t_")}
    with torch.no_grad():
        a = make_student_loss("in+out")({"student": S}, b)[0]
        c = make_student_loss("in+out")({"student": S, "teacher": T}, plain)[0]
    assert torch.allclose(a, c, rtol=1e-4)
    # other weights, other data or another bottleneck setting: another cache file
    T2 = copy.deepcopy(T)
    with torch.no_grad(): T2.t5.shared.weight[5, 0] += 1
    paths = {teacher_cache_path(T, rows, True, tmp_path), teacher_cache_path(T2, rows, True, tmp_path),
             teacher_cache_path(T, rows[:-1], True, tmp_path), teacher_cache_path(T, rows, False, tmp_path)}
    assert len(paths) == 4


def test_predictions_use_the_ftr_only_for_the_teacher(tiny):
    t5, tok = tiny
    T = frozen(ChoiceScorer(copy.deepcopy(t5)))
    rows = [encode_choices(tok, e) for e in EXS]
    no_ftr = [dict(r, teacher_input_ids=r["input_ids"]) for r in rows]
    assert predict_choices(T, rows) == predict_choices(T, no_ftr)        # the student path never reads it
    with torch.no_grad():
        s_rows = teacher_forward(T, choice_collate(rows))["choice_logits"]
        s_no = teacher_forward(T, choice_collate(no_ftr))["choice_logits"]
    assert not torch.allclose(s_rows, s_no)


def test_choice_kl_ignores_absent_choices():
    t = torch.tensor([[1.0, 2.0, float("-inf")]]); s = torch.tensor([[1.0, 2.0, float("-inf")]])
    assert choice_kl(t, s) == 0
    assert choice_kl(t, torch.tensor([[2.0, 1.0, float("-inf")]])) > 0


@pytest.mark.parametrize("params,needle", [
    (dict(method="knife", flags={"kd": "sideways"}), "kd="), (dict(method="knife", flags={"colour": 1}), "colour"),
    (dict(method="knife_in", flags={"kd": "out"}), "contradicts"), (dict(method="knife", flags={"score": "x"}), "score="),
    (dict(method="knife", flags={"kd": "none"}), "task_weight"), (dict(method="ft_io"), "method="),
    (dict(method="knife", flags={"bottleneck": "yes"}), "bottleneck"),
    (dict(method="knife", flags={"student_init": "random"}), "student_init"),
    (dict(method="knife", flags={"teacher_positions": "middle"}), "teacher_positions"),
    (dict(method="knife", flags={"kd_in_layers": "some"}), "kd_in_layers")])
def test_bad_flags_name_the_parameter(params, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve_flags(RunConfig.from_params(**params))


def test_teacher_config_keeps_data_and_drops_student_flags():
    cfg = RunConfig.from_params(method="knife_out", dataset="openbookqa", seed=3, train_fraction=0.25,
                                flags={"score": "head", "task_weight": 0.5})
    t = teacher_config(cfg)
    assert (t.method, t.dataset, t.seed, t.train_fraction, t.flags) == ("knife_teacher", "openbookqa", 3, 0.25,
                                                                        {**{k: DEFAULTS[k] for k in TEACHER_FLAGS},
                                                                         "score": "head"})
    assert resolve_flags(RunConfig.from_params(method="ft_teacher_init"))["student_init"] == "teacher"


def test_results_table_never_averages_runs_of_another_budget(tmp_path):
    "Seeds of one budget are averaged; a run with another budget (e.g. the leaderboard's) is its own row."
    import json
    from knife_repro.knife import results_table
    def rec(i, seed, epochs, acc):
        cfg = {"method": "knife", "dataset": "strategyqa", "model": "tiny-t5", "scale": "smoke", "train_fraction": 1.0,
               "seed": seed, "epochs": epochs, "lr": 3e-3, "batch_size": 16, "max_train_samples": 128, "flags": {}}
        (tmp_path / f"r{i}.json").write_text(json.dumps({"config": cfg, "metrics": {
            "accuracy": acc, "n": 64, "accuracy_ci_low": acc - 0.1, "accuracy_ci_high": acc + 0.1}}))
    rec(0, 0, 2, 0.5); rec(1, 1, 2, 0.7); rec(2, 0, 6, 0.2)
    t = results_table(tmp_path, scale="smoke")
    assert len(t) == 2
    two = t[t["budget"].str.startswith("2 ep")].iloc[0]
    assert two["seeds"] == "0,1" and abs(two["accuracy"] - 0.6) < 1e-9
    assert t[t["budget"].str.startswith("6 ep")].iloc[0]["accuracy"] == 0.2


# ---------------------------------------------------------------------------------------------
# KNIFE on a decoder-only LM: tiny-gpt2 (learned absolute positions) and a tiny random Llama
# (rotary positions, the SmolLM2 architecture), both on the kit's tokenizer.

from knife_repro.knife import (ANSWER, FTR, PAD, TASK, attention_allowed, causal_attention_mask, causal_collate,
                               causal_forward, encode_causal_choices, full_causal_forward, position_ids_of,
                               prefix_groups, prefix_is_shareable, shared_prefix_forward)
from knife_repro.models import load_causal


@pytest.fixture(scope="module")
def causal_lms():
    from transformers import LlamaConfig, LlamaForCausalLM
    gpt, tok = load_causal("tiny-gpt2", seed=1)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(1)
    llama = LlamaForCausalLM(cfg)
    return {"gpt2": gpt.eval(), "llama": llama.eval()}, tok


@pytest.fixture(params=["gpt2", "llama"])
def causal(request, causal_lms):
    lms, tok = causal_lms
    return copy.deepcopy(lms[request.param]), tok


def causal_batch(tok, exs=EXS, **kw):
    return causal_collate([encode_causal_choices(tok, e, **kw) for e in exs], pad_id=tok.pad_token_id)


def blocks(lm):
    base = lm.base_model
    return base.h if hasattr(base, "h") else base.layers


def test_causal_rows_line_up(causal_lms):
    _, tok = causal_lms
    for e in EXS:
        enc = encode_causal_choices(tok, e)
        r = tok(f"rationale: {e['rationale']}\n", add_special_tokens=False).input_ids
        for x, tx, y, c in zip(enc["input_ids"], enc["teacher_input_ids"], enc["labels"], e["choices"]):
            assert tx == r + x and tok.decode(x).endswith("\nAnswer:")     # the FT baselines' causal format
            assert y == tok(f" {c}", add_special_tokens=False).input_ids + [tok.eos_token_id]
    long = dict(EXS[0], rationale="word " * 500)         # a long FTR is cut, never the task input
    enc = encode_causal_choices(tok, long, max_source_len=40)
    assert all(len(tx) == 40 and tx[-len(x):] == x for x, tx in zip(enc["input_ids"], enc["teacher_input_ids"]))
    b = causal_batch(tok)
    F = b["teacher_input_ids"].shape[1] - b["input_ids"].shape[1]
    encs = [encode_causal_choices(tok, e) for e in EXS]
    assert F == max(len(tx) - len(x) for d in encs for x, tx in zip(d["input_ids"], d["teacher_input_ids"]))
    assert torch.equal(b["teacher_input_ids"][:, F:], b["input_ids"]) and torch.equal(b["teacher_segments"][:, F:], b["segments"])
    assert ((b["teacher_segments"][:, :F] == FTR) | (b["teacher_segments"][:, :F] == PAD)).all()
    assert b["choice_mask"].tolist() == [[True, True, False, False], [True] * 4]


def test_causal_masks_and_positions_on_a_padded_batch_by_hand():
    "Three rows of mixed lengths: FTR 2 / task 2 / answer 1; FTR 1 / task 1 / answer 2; no FTR / task 1 / answer 1."
    rows = [{"input_ids": [[11, 12]], "teacher_input_ids": [[21, 22, 11, 12]], "labels": [[31]], "answer": 0},
            {"input_ids": [[13]], "teacher_input_ids": [[23, 13]], "labels": [[32, 33]], "answer": 0},
            {"input_ids": [[14]], "teacher_input_ids": [[14]], "labels": [[34]], "answer": 0}]
    b = causal_collate(rows, pad_id=0)
    P, R, T, A = PAD, FTR, TASK, ANSWER
    assert b["teacher_segments"].tolist() == [[R, R, T, T, A], [P, R, T, A, A], [P, P, T, A, P]]
    assert b["segments"].tolist() == [[T, T, A], [T, A, A], [T, A, P]]
    assert b["teacher_input_ids"].tolist() == [[21, 22, 11, 12, 31], [0, 23, 13, 32, 33], [0, 0, 14, 34, 0]]
    assert b["input_ids"].tolist() == [[11, 12, 31], [13, 32, 33], [14, 34, 0]]
    bottleneck = [[[1, 0, 0, 0, 0],     # F
                   [1, 1, 0, 0, 0],     # F
                   [1, 1, 1, 0, 0],     # t: the FTR and itself
                   [1, 1, 1, 1, 0],     # t
                   [0, 0, 1, 1, 1]],    # a: task and answer only
                  [[1, 0, 0, 0, 0],     # pad: itself only
                   [0, 1, 0, 0, 0],     # F
                   [0, 1, 1, 0, 0],     # t
                   [0, 0, 1, 1, 0],     # a
                   [0, 0, 1, 1, 1]],    # a
                  [[1, 0, 0, 0, 0],     # pad
                   [0, 1, 0, 0, 0],     # pad
                   [0, 0, 1, 0, 0],     # t
                   [0, 0, 1, 1, 0],     # a
                   [0, 0, 0, 0, 1]]]    # pad
    plain = copy.deepcopy(bottleneck)
    plain[0][4] = [1, 1, 1, 1, 1]; plain[1][3] = [0, 1, 1, 1, 0]; plain[1][4] = [0, 1, 1, 1, 1]
    assert attention_allowed(b["teacher_segments"]).long().tolist() == bottleneck
    assert attention_allowed(b["teacher_segments"], bottleneck=False).long().tolist() == plain
    student = [[[1, 0, 0], [1, 1, 0], [1, 1, 1]], [[1, 0, 0], [1, 1, 0], [1, 1, 1]], [[1, 0, 0], [1, 1, 0], [0, 0, 1]]]
    assert attention_allowed(b["segments"]).long().tolist() == student
    m = causal_attention_mask(b["teacher_segments"])
    assert m.shape == (3, 1, 5, 5) and m.dtype == torch.float32
    lo = torch.finfo(torch.float32).min
    assert torch.equal(m[:, 0], torch.tensor(bottleneck).eq(0).float() * lo)
    assert causal_attention_mask(b["segments"], dtype=torch.bfloat16).dtype == torch.bfloat16
    assert position_ids_of(b["teacher_segments"]).tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 2, 3], [0, 0, 0, 1, 0]]
    assert position_ids_of(b["teacher_segments"], "shared").tolist() == [[0, 1, 0, 1, 2], [0, 0, 0, 1, 2], [0, 0, 0, 1, 0]]
    assert position_ids_of(b["segments"]).tolist() == [[0, 1, 2], [0, 1, 2], [0, 1, 0]]
    with pytest.raises(ConfigError, match="teacher_positions"):
        position_ids_of(b["segments"], "middle")


def test_causal_student_and_teacher_paths_equal_plain_transformers(causal):
    "Our 4D mask and position ids against transformers' own causal forward, one unpadded row at a time."
    lm, tok = causal
    b = causal_batch(tok)
    with torch.no_grad():
        ours_s = causal_forward(ChoiceScorer(lm), b["input_ids"], b["segments"])["rows"]
        ours_t = causal_forward(ChoiceScorer(lm), b["teacher_input_ids"], b["teacher_segments"], bottleneck=False)["rows"]
        for ours, ids, seg in ((ours_s, b["input_ids"], b["segments"]), (ours_t, b["teacher_input_ids"], b["teacher_segments"])):
            for i in range(ids.shape[0]):
                real = seg[i] != PAD
                x, s = ids[i][real][None], seg[i][real]
                lp = lm(input_ids=x).logits.float().log_softmax(-1)[0, :-1].gather(-1, x[0, 1:, None])[:, 0]
                assert torch.allclose(ours[i], (lp * (s[1:] == ANSWER)).sum(), atol=1e-4)


def test_causal_answer_attention_to_ftr_is_exactly_zero(causal):
    lm, tok = causal
    lm.set_attn_implementation("eager")
    b = causal_batch(tok)
    seg = b["teacher_segments"]
    a2f = ((seg == ANSWER)[:, :, None] & (seg == FTR)[:, None, :])[:, None]        # (rows, 1, q, k)
    t2f = ((seg == TASK)[:, :, None] & (seg == FTR)[:, None, :])[:, None]
    assert a2f.sum() > 0
    with torch.no_grad():
        for bottleneck in (True, False):
            att = lm(input_ids=b["teacher_input_ids"], attention_mask=causal_attention_mask(seg, bottleneck),
                     position_ids=position_ids_of(seg), output_attentions=True).attentions
            assert len(att) == 2
            on_ftr = max(float((a * a2f).abs().max()) for a in att)
            assert all(float((a * t2f).max()) > 0 for a in att)                        # task tokens read the FTR
            if bottleneck:
                assert on_ftr == 0.0
                ans_rows = (seg == ANSWER)[:, None, :, None]
                ta = ((seg == TASK) | (seg == ANSWER))[:, None, None, :]
                assert all(torch.allclose((a * ta).sum(-1)[ans_rows.squeeze(-1).expand_as(a[..., 0])], torch.ones(())) for a in att)
            else:
                assert on_ftr > 0             # the mask, not the inputs, is what hides the FTR


def answer_outputs(scorer, ids, seg, bottleneck, force=None):
    "Answer log-probs and last-layer answer states; `force`: per-block outputs to impose on the task positions."
    task = seg == TASK
    saved, hooks = [], []
    for l, blk in enumerate(blocks(scorer.lm)):
        def hook(mod, args, out, l=l):
            h = out[0] if isinstance(out, tuple) else out
            if force is None:
                saved.append(h[task].clone()); return None
            h = h.clone(); h[task] = force[l]
            return (h, *out[1:]) if isinstance(out, tuple) else h
        hooks.append(blk.register_forward_hook(hook))
    try:
        with torch.no_grad():
            o = full_causal_forward(scorer, ids, seg, bottleneck)    # whole rows: the hooks act on the rows' columns
    finally:
        for h in hooks: h.remove()
    return o["answer_logprobs"], o["dec"][seg == ANSWER], saved


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_causal_answer_sees_the_ftr_only_through_the_task_states(causal, attn):
    """Change every FTR token but force each block's outputs at the task positions to those of the first run:
    behind the bottleneck the answer's log-probs and states are bit-identical; without it they are not."""
    lm, tok = causal
    lm.set_attn_implementation(attn)
    S = ChoiceScorer(lm).eval()
    b = causal_batch(tok)
    ids, seg = b["teacher_input_ids"], b["teacher_segments"]
    ftr = seg == FTR
    ids2 = ids.clone(); ids2[ftr] = (ids2[ftr] + 7) % (len(tok) - 10) + 4      # same length, other tokens
    assert (ids2[ftr] != ids[ftr]).all()
    for bottleneck in (True, False):
        lp1, h1, task_states = answer_outputs(S, ids, seg, bottleneck)
        lp_free, h_free, _ = answer_outputs(S, ids2, seg, bottleneck)          # nothing forced
        lp2, h2, _ = answer_outputs(S, ids2, seg, bottleneck, force=task_states)
        assert not torch.allclose(lp_free, lp1)      # the FTR matters (through the task states, at least)
        if bottleneck:
            assert torch.equal(lp2, lp1) and torch.equal(h2, h1)
        else:
            assert not torch.allclose(lp2, lp1)      # without the mask the answer also reads the FTR directly


def test_prefix_groups_and_shareable_layouts_by_hand():
    seg = torch.tensor([[FTR, TASK, TASK, ANSWER, PAD], [FTR, TASK, TASK, ANSWER, ANSWER], [PAD, FTR, TASK, ANSWER, PAD]])
    ids = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 7, 9, 9], [0, 5, 6, 8, 0]])
    assert prefix_groups(ids, seg).tolist() == [0, 0, 1]          # same prefix tokens, but row 2's sit elsewhere
    ids2 = ids.clone(); ids2[1, 2] = 4
    assert prefix_groups(ids2, seg).tolist() == [0, 1, 2]         # one prefix token differs
    assert prefix_is_shareable(seg)
    assert not prefix_is_shareable(torch.tensor([[TASK, ANSWER, TASK, ANSWER]]))    # a prefix token after an answer
    assert not prefix_is_shareable(torch.tensor([[TASK, TASK, PAD], [TASK, ANSWER, PAD]]))   # a row without answer


@pytest.mark.parametrize("score", ["loglik", "loglik_mean", "head"])
@pytest.mark.parametrize("positions", ["continue", "shared"])
def test_shared_prefix_forward_equals_whole_rows(causal, score, positions):
    """Reading each example's prefix once and its choices against a copy of its KV cache gives the whole-row pass's
    row scores, answer log-probs, states on every real column (last layer and all layers) and gradients, for the
    teacher (with and without the bottleneck) and the student. The whole-row pass is the one checked against
    plain transformers and for the bottleneck above."""
    lm, tok = causal
    S = ChoiceScorer(lm, score, positions)
    if S.head is not None: torch.nn.init.normal_(S.head.weight)
    b = causal_batch(tok)
    for ids, seg, bottleneck in ((b["teacher_input_ids"], b["teacher_segments"], True),
                                 (b["teacher_input_ids"], b["teacher_segments"], False), (b["input_ids"], b["segments"], True)):
        outs, grads = [], []
        for fn in (full_causal_forward, shared_prefix_forward):
            o = fn(S, ids, seg, bottleneck, "all")
            real = seg != PAD
            (o["rows"].sum() + o["enc"][real].pow(2).mean() + o["dec"][o["out_mask"]].sum()).backward()
            grads.append({n: p.grad.clone() for n, p in S.named_parameters() if p.grad is not None}); S.zero_grad()
            outs.append(o)
        full, shared = outs
        for k in ("rows", "answer_logprobs"):
            assert torch.allclose(full[k], shared[k], atol=1e-5), k
        for k in ("enc", "dec"):
            assert full[k].shape == shared[k].shape and torch.allclose(full[k][real], shared[k][real], atol=1e-5), k
        assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
        assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-4) for n in grads[0])
    assert torch.allclose(causal_forward(S, b["input_ids"], b["segments"])["rows"],          # the default path
                          full_causal_forward(S, b["input_ids"], b["segments"])["rows"], atol=1e-5)


@pytest.mark.parametrize("kd_out,layers", [("hidden", "last"), ("kl", "last"), ("hidden", "all")])
@pytest.mark.parametrize("positions", ["continue", "shared"])
def test_causal_kd_losses_vanish_when_student_is_teacher(causal, kd_out, layers, positions):
    """Exactly 0 with an empty FTR (identical inputs, masks and positions); never with an FTR, under either
    position scheme, since the task tokens read it. In a batch mixing rows with and without an FTR, the rows
    without one match the student to float rounding (their teacher rows have extra, masked pad columns)."""
    lm, tok = causal
    T = frozen(ChoiceScorer(copy.deepcopy(lm), positions=positions))
    S = ChoiceScorer(lm).eval()
    loss_fn = make_student_loss("in+out", kd_out=kd_out, kd_in_layers=layers)
    empty = causal_batch(tok, ftr=False)
    assert torch.equal(empty["teacher_input_ids"], empty["input_ids"])
    with torch.no_grad():
        _, logs = loss_fn({"student": S, "teacher": T}, empty)
        assert logs["kd_in"] == 0 and logs["kd_out"] == 0
        _, logs = loss_fn({"student": S, "teacher": T}, causal_batch(tok))
        assert logs["kd_in"] > 0 and logs["kd_out"] > 0
        mixed = causal_collate([encode_causal_choices(tok, EXS[0]), encode_causal_choices(tok, EXS[1], ftr=False)],
                               tok.pad_token_id)
        t, s = teacher_forward(T, mixed, layers=layers), student_forward(S, mixed, layers)
        assert mixed["teacher_input_ids"].shape[1] > mixed["input_ids"].shape[1]        # an FTR block in the batch
        for k, m in (("enc", "in_mask"), ("dec", "out_mask")):
            on = s[m][2:].bool()                                 # EXS[1]'s four rows, on their compared positions
            assert torch.allclose(t[k][2:][on], s[k][2:][on], atol=1e-5)
            assert not torch.allclose(t[k][:2][s[m][:2].bool()], s[k][:2][s[m][:2].bool()], atol=1e-5)
        assert torch.allclose(t["choice_logits"][1], s["choice_logits"][1], atol=1e-4)
        assert not torch.allclose(t["choice_logits"][0], s["choice_logits"][0], atol=1e-4)


def test_causal_positions_of_the_task_tokens(causal_lms):
    _, tok = causal_lms
    b = causal_batch(tok)
    F = b["teacher_input_ids"].shape[1] - b["input_ids"].shape[1]
    real = b["segments"] != PAD
    shared = position_ids_of(b["teacher_segments"], "shared")[:, F:]
    cont = position_ids_of(b["teacher_segments"], "continue")[:, F:]
    student = position_ids_of(b["segments"])
    n_ftr = (b["teacher_segments"] == FTR).sum(1, keepdim=True)
    assert torch.equal(shared[real], student[real])            # identical ids for task and answer tokens
    assert torch.equal(cont[real], (student + n_ftr)[real])    # offset by each row's FTR length


def test_causal_gradients_reach_only_the_student_and_the_head(causal):
    lm, tok = causal
    T = frozen(ChoiceScorer(copy.deepcopy(lm)))
    S = ChoiceScorer(lm, score="head")
    loss, logs = make_student_loss("in+out", task_weight=0.5, kd_in_layers="all")({"student": S, "teacher": T},
                                                                                  causal_batch(tok))
    loss.backward()
    assert set(logs) == {"kd_in", "kd_out", "task"}
    assert all(p.grad is None for p in T.parameters())
    assert S.head.weight.grad.abs().sum() > 0
    assert S.lm.get_input_embeddings().weight.grad.abs().sum() > 0
    Tt = ChoiceScorer(copy.deepcopy(lm))
    tl, _ = make_teacher_loss()({"teacher": Tt}, causal_batch(tok))
    tl.backward()
    assert Tt.lm.get_input_embeddings().weight.grad.abs().sum() > 0


def test_causal_cached_states_equal_live_ones(causal_lms, tmp_path):
    lms, tok = causal_lms
    T = frozen(ChoiceScorer(copy.deepcopy(lms["gpt2"])))
    rows = [encode_causal_choices(tok, e) for e in EXS * 3]
    for layers in ("last", "all"):
        st, hit = cached_teacher_states(T, rows, root=tmp_path, batch_size=4, layers=layers)
        st2, hit2 = cached_teacher_states(T, rows, root=tmp_path, batch_size=4, layers=layers)
        assert (hit, hit2) == (False, True)
        b = causal_collate([{**r, **s} for r, s in zip(rows[:2], st2[:2])], pad_id=tok.pad_token_id)
        plain = {k: v for k, v in b.items() if not k.startswith("t_")}
        S = ChoiceScorer(copy.deepcopy(lms["gpt2"])).eval()
        with torch.no_grad():
            S.lm.get_input_embeddings().weight.mul_(0.9)           # a student that differs from the teacher
            for kd_out in ("hidden", "kl"):
                loss_fn = make_student_loss("in+out", kd_out=kd_out, kd_in_layers=layers)
                a, la = loss_fn({"student": S}, b)
                c, lc = loss_fn({"student": S, "teacher": T}, plain)
                assert a > 0 and torch.allclose(a, c, rtol=1e-5) and set(la) == set(lc)
    assert len(list(tmp_path.iterdir())) == 2                      # one cache file per layers setting
    shared = frozen(ChoiceScorer(copy.deepcopy(lms["gpt2"]), positions="shared"))
    assert teacher_cache_path(shared, rows, root=tmp_path) != teacher_cache_path(T, rows, root=tmp_path)


def test_causal_predictions_use_the_ftr_only_for_the_teacher(causal_lms):
    lms, tok = causal_lms
    T = frozen(ChoiceScorer(copy.deepcopy(lms["llama"])))
    rows = [encode_causal_choices(tok, e) for e in EXS]
    no_ftr = [dict(r, teacher_input_ids=r["input_ids"]) for r in rows]
    assert predict_choices(T, rows) == predict_choices(T, no_ftr)
    with torch.no_grad():
        a = teacher_forward(T, causal_collate(rows))["choice_logits"]
        c = teacher_forward(T, causal_collate(no_ftr))["choice_logits"]
    assert not torch.allclose(a, c)


def test_knife_run_on_a_causal_model(tmp_path):
    "The whole path through `run`: a tiny-gpt2 teacher behind its 4D mask, cached states, a KD-In+Out student."
    from knife_repro.data import load as load_data
    from knife_repro.knife import run
    dd = load_data("toy", n_train=24, n_eval=8)
    common = dict(dataset="toy", model="tiny-gpt2", seed=0, scale="smoke", output_dir=str(tmp_path), lr=3e-3,
                  batch_size=8, epochs=1, max_train_samples=24, max_eval_samples=8, max_source_len=64, max_target_len=8)
    rec = run(RunConfig.from_params(method="knife", **common), dd=dd)
    assert rec["teacher_run"] and 0 <= rec["metrics"]["accuracy"] <= 1
    assert any("decoder-only" in n for n in rec["notes"]) and any("disk cache" in n for n in rec["notes"])
    trec = run(RunConfig.from_params(method="knife_teacher", **common), dd=dd)   # already there: skipped
    assert trec["run_id"] == rec["teacher_run"] and "accuracy_no_ftr" in trec["metrics"]
    # the other flags of the decoder-only path: shared positions (another teacher), every layer, a head
    rec2 = run(RunConfig.from_params(method="knife_in", flags={"teacher_positions": "shared", "kd_in_layers": "all",
                                                               "score": "head"}, **common), dd=dd)
    assert rec2["teacher_run"] != rec["teacher_run"] and rec2["resolved_flags"]["teacher_positions"] == "shared"
    with pytest.raises(ConfigError, match="teacher_positions"):     # a T5 has no position choice to make
        run(RunConfig.from_params(method="knife_teacher", flags={"teacher_positions": "shared"},
                                  **dict(common, model="tiny-t5")), dd=dd)


def test_causal_mechanism_on_pretrained_smollm2(smollm2):
    """On the real SmolLM2-135M (GQA, tied embeddings, its own tokenizer): our rows score as transformers does, and the
    answer reads the FTR only through the task states (the functional test above, bit for bit)."""
    lm, tok = smollm2
    S = ChoiceScorer(lm).eval()
    b = causal_batch(tok, EXS[:1])                  # two rows: the mixed padded batches are the tiny models' tests
    with torch.no_grad():
        ours = causal_forward(S, b["teacher_input_ids"], b["teacher_segments"], bottleneck=False)["rows"]
        for i in (0, 1):
            real = b["teacher_segments"][i] != PAD
            x, s = b["teacher_input_ids"][i][real][None], b["teacher_segments"][i][real]
            lp = lm(input_ids=x).logits.float().log_softmax(-1)[0, :-1].gather(-1, x[0, 1:, None])[:, 0]
            assert torch.allclose(ours[i], (lp * (s[1:] == ANSWER)).sum(), atol=1e-3)
    ids, seg = b["teacher_input_ids"], b["teacher_segments"]
    ftr = seg == FTR
    ids2 = ids.clone(); ids2[ftr] = (ids2[ftr] + 7) % 40000 + 100
    lp1, h1, task_states = answer_outputs(S, ids, seg, True)
    lp2, h2, _ = answer_outputs(S, ids2, seg, True, force=task_states)
    assert torch.equal(lp2, lp1) and torch.equal(h2, h1)
    lp1n, _, task_n = answer_outputs(S, ids, seg, False)
    assert not torch.allclose(answer_outputs(S, ids2, seg, False, force=task_n)[0], lp1n)


def test_knife_run_on_pretrained_smollm2(tmp_path):
    "`run` end to end with the pretrained causal preset as teacher and student, on a few toy questions (a pipeline check)."
    from knife_repro.data import load as load_data
    from knife_repro.knife import run
    dd = load_data("toy", n_train=8, n_eval=4)
    rec = run(RunConfig.from_params(method="knife", dataset="toy", model="smollm2-135m", seed=0, scale="smoke",
                                    output_dir=str(tmp_path), lr=1e-5, batch_size=8, epochs=1, max_train_samples=8,
                                    max_eval_samples=4, max_source_len=48, max_target_len=8), dd=dd)
    assert rec["teacher_run"] and rec["metrics"]["n"] == 4 and 0 <= rec["metrics"]["accuracy"] <= 1
    assert any("decoder-only" in n for n in rec["notes"])


def test_paired_and_selection_tables_from_hand_made_records(tmp_path):
    "The cpu section's helpers: per-question pairing across seeds, and the validation-only learning-rate table."
    import json
    from knife_repro.core import write_run_record
    from knife_repro.knife import paired, selection_table, cpu_records
    from knife_repro.train import resolve_config
    golds = [0, 1, 0, 1]
    preds = {("knife", 0): [0, 1, 0, 0], ("knife", 1): [0, 1, 1, 1], ("ft_io", 0): [1, 1, 0, 0], ("ft_io", 1): [0, 0, 1, 1]}
    for (m, s), pr in preds.items():
        cfg = resolve_config(method=m, dataset="openbookqa", scale="cpu", seed=s, output_dir=str(tmp_path))
        ex = [{"id": f"q{i}", "gold": g, "pred": p} for i, (g, p) in enumerate(zip(golds, pr))]
        write_run_record(cfg, {"accuracy": sum(e["gold"] == e["pred"] for e in ex) / 4}, per_example=ex)
    for lr, acc in ((1e-5, 0.3), (3e-5, 0.5)):          # a validation run is not a test run, and vice versa
        cfg = resolve_config(method="ft_io", dataset="openbookqa", scale="cpu", lr=lr, report_split="validation",
                             output_dir=str(tmp_path))
        write_run_record(cfg, {"accuracy": acc, "n": 200})
    recs = cpu_records(tmp_path / "runs")
    assert len(recs) == 4
    t = paired(recs, "KNIFE (In+Out)", "FT I→O", "openbookqa")
    # by hand: seed 0 KNIFE right on q0-q2, FT on q1-q2; seed 1 KNIFE on q0, q1, q3, FT on q0, q3:
    # discordant pairs (s0, q0) and (s1, q1), both for KNIFE; accuracy 6/8 vs 4/8
    assert (t["only_a"], t["only_b"], t["n_seeds"], t["n_questions"]) == (2, 0, 2, 4)
    assert abs(t["diff"] - 2 / 8) < 1e-12 and abs(t["p_mcnemar"] - 0.5) < 1e-12
    sel = selection_table(tmp_path / "runs")
    assert sel.loc[3e-5, "openbookqa"] == 0.5 and sel["mean"].idxmax() == 3e-5


def test_cli_notebook_and_sweep_resolve_the_same_cpu_point(tmp_path):
    "A point of sweeps/knife.yaml's cpu grid: the notebook's resolution (table_config, given the point's papermill"
    " parameters as the notebook builds them) and `python -m knife_repro.train --set ...` give one config and run id."
    import subprocess, sys, json
    from knife_repro.core import PROJECT_ROOT
    from knife_repro.knife import table_config
    from knife_repro.sweep import load_sweep, points
    from knife_repro.train import config_from_args
    pts = points(load_sweep(PROJECT_ROOT / "sweeps" / "knife.yaml", "cpu"), tmp_path)
    picked = [p for p in pts if p["params"]["method"] in ("knife", "ft_iro", "knife_teacher") and p["params"]["seed"] == 1]
    assert any(p["params"]["overrides"] for p in picked) and any(not p["params"]["overrides"] for p in picked)
    notebook_only = {"method", "overrides", "output_dir"}
    for pt in picked:
        p = pt["params"]
        nb = table_config(p["method"], **({k: v for k, v in p.items() if k not in notebook_only}
                                          | p["overrides"] | {"output_dir": p["output_dir"]}))
        sets = [f"{k}={v}" for k, v in {**p, **p["overrides"]}.items() if k != "overrides" and v is not None]
        cli, _ = config_from_args(["--set", *sets])
        assert cli == nb and cli.run_id == nb.run_id, (p, cli, nb)
        out = subprocess.run([sys.executable, "-m", "knife_repro.train", "--dry-run", "--set", *sets],
                             capture_output=True, text=True)
        assert out.returncode == 0 and json.loads(out.stdout)["run_id"] == nb.run_id
    assert len({table_config(**({k: v for k, v in p["params"].items() if k not in ("overrides", "output_dir")}
                                | p["params"]["overrides"])).run_id for p in pts}) == len(pts)   # every point its own run


def test_loglik_mean_divides_the_summed_answer_loglik_by_its_tokens():
    "score='loglik_mean': each row's score is its summed answer log-likelihood over its number of answer tokens."
    from knife_repro.knife import causal_forward, causal_collate
    from knife_repro.models import load_causal
    lm, tok = load_causal("tiny-gpt2", seed=0)
    rows = [{"input_ids": [[11, 12], [11, 12]], "teacher_input_ids": [[21, 11, 12], [21, 11, 12]],
             "labels": [[31], [32, 33, 34]], "answer": 0}]
    b = causal_collate(rows, pad_id=tok.pad_token_id)
    with torch.no_grad():
        s = causal_forward(ChoiceScorer(lm, "loglik"), b["input_ids"], b["segments"])["rows"]
        m = causal_forward(ChoiceScorer(lm, "loglik_mean"), b["input_ids"], b["segments"])["rows"]
    assert torch.allclose(m, s / torch.tensor([1.0, 3.0]))
    t5, ttok = load_seq2seq("tiny-t5", seed=0)
    labels = torch.tensor([[5, 6, -100], [7, 8, 9]])
    enc = torch.zeros(2, 3, t5.config.d_model)
    with torch.no_grad():
        s5 = ChoiceScorer(t5, "loglik").decode(enc, torch.ones(2, 3, dtype=torch.long), labels)["rows"]
        m5 = ChoiceScorer(t5, "loglik_mean").decode(enc, torch.ones(2, 3, dtype=torch.long), labels)["rows"]
    assert torch.allclose(m5, s5 / torch.tensor([2.0, 3.0]))


def test_point_minutes_adds_the_seconds_not_the_rate():
    from knife_repro.knife import point_minutes
    rec = {"timings": {"load_s": 30.0, "train_s": 540.0, "eval_s": 30.0, "tokens_per_s": 150.0, "optimizer_steps": 75}}
    assert point_minutes(rec) == 10.0


def test_knife_records_its_inference_tokens(tmp_path):
    "A scorer: no generated token; per question the answer tokens of every option (' option' + EOS, its labels)."
    from knife_repro.data import load as load_data
    from knife_repro.knife import run
    from knife_repro.models import load_causal
    from knife_repro.qa import causal_target_ids, eval_splits
    dd = load_data("toy", n_train=16, n_eval=8)
    common = dict(dataset="toy", model="tiny-gpt2", seed=0, scale="smoke", output_dir=str(tmp_path), lr=3e-3,
                  batch_size=8, epochs=1, max_train_samples=16, max_eval_samples=8, max_source_len=64, max_target_len=8)
    m = run(RunConfig.from_params(method="knife", **common), dd=dd)["metrics"]
    _, tok = load_causal("tiny-gpt2", seed=0)
    test = dd[eval_splits(dd, "test")[1]]
    assert len(test) == 8 == m["n"]
    want = sum(len(causal_target_ids(tok, c, 8)) for e in test for c in e["choices"]) / len(test)
    assert m["gen_tokens_per_question"] == 0.0 and m["scored_tokens_per_question"] == pytest.approx(want)


def test_teacher_split_table_by_hand():
    "Accuracy on the questions the teacher gets right / wrong, and agreement with the teacher, pooled over seeds."
    from knife_repro.knife import teacher_split_table
    def rec(method, seed, preds, golds):
        return {"config": {"method": method, "dataset": "toy", "seed": seed, "train_fraction": 1.0, "flags": {"kd": "in+out"}},
                "per_example": [{"id": str(i), "pred": p, "gold": g} for i, (p, g) in enumerate(zip(preds, golds))]}
    g = [0, 1, 2, 3]
    recs = [rec("knife_teacher", 0, [0, 1, 0, 0], g), rec("knife", 0, [0, 1, 0, 3], g), rec("ft_io", 0, [1, 1, 2, 3], g),
            rec("knife_teacher", 1, [0, 0, 2, 3], g), rec("knife", 1, [0, 0, 2, 0], g), rec("ft_io", 1, [0, 1, 2, 3], g),
            rec("knife_teacher", 2, [0, 1, 2, 3], g), rec("knife", 2, [0, 1, 2, 3], g)]     # seed 2: no FT, left out
    t = teacher_split_table(recs).iloc[0]
    # seed 0: teacher right q0,q1 (KNIFE 2/2, FT 1/2), wrong q2,q3 (KNIFE 1/2, FT 2/2); agree KNIFE 3/4, FT 1/4
    # seed 1: teacher right q0,q2,q3 (KNIFE 2/3, FT 3/3), wrong q1 (KNIFE 0/1, FT 1/1); agree KNIFE 3/4, FT 3/4
    assert t.seeds == "0,1" and (t["teacher right (n)"], t["teacher wrong (n)"]) == (5, 3)
    assert (t["KNIFE (In+Out) | teacher right"], t["FT I→O | teacher right"]) == (4 / 5, 4 / 5)
    assert (t["KNIFE (In+Out) | teacher wrong"], t["FT I→O | teacher wrong"]) == (1 / 3, 3 / 3)
    assert (t["KNIFE (In+Out) picks the teacher's answer"], t["FT I→O picks the teacher's answer"]) == (6 / 8, 4 / 8)
