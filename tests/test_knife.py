"KNIFE: input alignment, the teacher's cross-attention bottleneck, KD losses, gradients, the teacher-state cache."
import copy

import pytest
import torch

from knife_repro.core import ConfigError, RunConfig
from knife_repro.knife import (ChoiceScorer, choice_collate, choice_kl, cross_mask_of, cached_teacher_states,
                               compute_teacher_states, encode_choices, make_student_loss, make_teacher_loss,
                               predict_choices, resolve_flags, student_forward, teacher_cache_path, teacher_config,
                               teacher_forward)
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
    (dict(method="knife", flags={"student_init": "random"}), "student_init")])
def test_bad_flags_name_the_parameter(params, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve_flags(RunConfig.from_params(**params))


def test_teacher_config_keeps_data_and_drops_student_flags():
    cfg = RunConfig.from_params(method="knife_out", dataset="openbookqa", seed=3, train_fraction=0.25,
                                flags={"score": "head", "task_weight": 0.5})
    t = teacher_config(cfg)
    assert (t.method, t.dataset, t.seed, t.train_fraction, t.flags) == ("knife_teacher", "openbookqa", 3, 0.25,
                                                                        {"score": "head"})
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
