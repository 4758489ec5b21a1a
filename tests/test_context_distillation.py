"""Context distillation: the token-level losses, the two contexts, the frozen teacher, the answer extractor."""
import copy

import pytest
import torch
import torch.nn.functional as F

import knife_repro.context_distillation as cd
from knife_repro.cd_addition import operation, split_scratchpad
from knife_repro.core import ConfigError, RunConfig
from knife_repro.data import addition as add
from knife_repro.models import load_causal, load_seq2seq
from knife_repro.training import pad_collate


@pytest.fixture(scope="module")
def t5():
    return load_seq2seq("tiny-t5", seed=0, tokenizer="byte")


def test_sampled_estimate_converges_to_exact_kl():
    torch.manual_seed(0)
    p, q = torch.randn(3, 40) * 2, torch.randn(3, 40)
    exact = cd.token_kl(q, p, "exact")
    ref = F.kl_div(F.log_softmax(q, -1), F.log_softmax(p, -1), log_target=True, reduction="none").sum(-1)
    assert torch.allclose(exact, ref, atol=1e-5)
    g = torch.Generator().manual_seed(1)
    big = cd.token_kl(q, p, "sampled", n_samples=200_000, generator=g)
    assert torch.allclose(big, exact, atol=0.03)
    errs = [(cd.token_kl(q, p, "sampled", n_samples=n, generator=g) - exact).abs().mean() for n in (10, 1000, 100_000)]
    assert errs[0] > errs[1] > errs[2]
    # unbiased at n = 100 (the paper's setting): the mean of many estimates is the exact KL
    many = torch.stack([cd.token_kl(q, p, "sampled", n_samples=100, generator=g) for _ in range(400)]).mean(0)
    assert torch.allclose(many, exact, atol=0.05)


def test_sampled_gradient_is_cross_entropy_to_the_sample_histogram():
    torch.manual_seed(0)
    p = torch.randn(1, 30)
    q = torch.randn(1, 30, requires_grad=True)
    g = torch.Generator().manual_seed(3)
    cd.token_kl(q, p, "sampled", n_samples=100, generator=g).sum().backward()
    idx = torch.multinomial(F.softmax(p, -1), 100, replacement=True, generator=torch.Generator().manual_seed(3))
    hist = torch.bincount(idx[0], minlength=30).float() / 100
    assert torch.allclose(q.grad[0], F.softmax(q.detach(), -1)[0] - hist, atol=1e-6)


def test_topk_and_hard():
    torch.manual_seed(0)
    p, q = torch.randn(4, 12), torch.randn(4, 12)
    # with k = V - 1 the "other" bucket is the last token: top-k equals the exact KL
    assert torch.allclose(cd.token_kl(q, p, "topk", top_k=11), cd.token_kl(q, p, "exact"), atol=1e-5)
    small = cd.token_kl(q, p, "topk", top_k=2)
    assert (small <= cd.token_kl(q, p, "exact") + 1e-6).all() and (small >= -1e-6).all()
    tgt = torch.tensor([0, 3, 5, 11])
    assert torch.allclose(cd.token_kl(q, None, "hard", targets=tgt), F.cross_entropy(q, tgt, reduction="none"))
    with pytest.raises(ValueError, match="loss='nope'"):
        cd.token_kl(q, p, "nope")


def test_teacher_sees_the_scratchpad_and_the_student_does_not(t5):
    model, tok = t5
    model.eval()
    y = add.scratchpad_target(29, 57, spaced=False)
    pre, ans = split_scratchpad(y)
    op = operation(True, False)
    ex = cd.encode_example(tok, op.student_template((29, 57)), op.teacher_template((29, 57)), pre, ans)
    b = pad_collate([ex], pad_id=tok.pad_token_id)
    pre_ids = tok(pre, add_special_tokens=False).input_ids
    ans_ids = tok(ans, add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert b["t0_decoder_ids"][0].tolist() == pre_ids + ans_ids          # scratchpad, then f(y)
    assert b["s_decoder_ids"][0].tolist() == ans_ids                     # f(y) alone
    assert tok.decode(b["t0_input_ids"][0], skip_special_tokens=True).startswith("scratch: ")
    assert tok.decode(b["s_input_ids"][0], skip_special_tokens=True).startswith("direct: ")
    with torch.no_grad():
        t = cd.answer_logits(model, b, "t0", False)
        # the same logits computed by hand: teacher prompt in the encoder, [start] + scratchpad + answer in the decoder
        dec = torch.tensor([[0] + pre_ids + ans_ids[:-1]])
        full = model(input_ids=b["t0_input_ids"], decoder_input_ids=dec).logits[0, len(pre_ids):]
        assert torch.allclose(t, full, atol=1e-5)
        # changing the scratchpad changes the teacher's distributions, never the student's
        ex2 = cd.encode_example(tok, op.student_template((29, 57)), op.teacher_template((29, 57)), pre.replace("C:1", "C:0"), ans)
        b2 = pad_collate([ex2], pad_id=tok.pad_token_id)
        assert not torch.allclose(cd.answer_logits(model, b2, "t0", False), t)
        assert torch.allclose(cd.answer_logits(model, b2, "s", False), cd.answer_logits(model, b, "s", False))


def test_causal_views_align_answer_positions():
    model, tok = load_causal("tiny-gpt2", seed=0)
    model.eval()
    ex = cd.encode_example(tok, "-- Q: a\nSQL:", ["schema\n-- Q: b\nSQL: x\n-- Q: a\nSQL:", "other\n-- Q: a\nSQL:"], "",
                           " SELECT 1", causal=True)
    b = pad_collate([ex, ex], pad_id=tok.pad_token_id)
    n_ans = len(ex["labels"])
    with torch.no_grad():
        s, t1 = cd.answer_logits(model, b, "s", True), cd.answer_logits(model, b, "t1", True)
        assert s.shape[0] == t1.shape[0] == 2 * n_ans
        ids = torch.tensor([ex["s_input_ids"]])
        ref = model(input_ids=ids).logits[0, len(ex["s_input_ids"]) - n_ans - 1:-1]
        assert torch.allclose(s[:n_ans], ref, atol=1e-5)
    assert cd.teacher_views(b) == ["t0", "t1"]
    # an ensemble teacher = the mean of the views' probabilities: with identical views, the single view
    same = dict(b); same.update({k.replace("t1_", "t0_"): v for k, v in b.items() if k.startswith("t1_")})
    single = {k: v for k, v in same.items() if not k.startswith("t1_")}
    l_ens = cd.make_loss("exact", causal=True)({"student": model, "teacher": model}, same)[0]
    l_one = cd.make_loss("exact", causal=True)({"student": model, "teacher": model}, single)[0]
    assert torch.allclose(l_ens, l_one, atol=1e-5)


def test_teacher_parameters_do_not_change_during_distillation(t5):
    model, tok = t5
    student = copy.deepcopy(model)
    teacher = cd.freeze(model)
    op = operation(True, False)
    exs = [cd.encode_example(tok, op.student_template(p), op.teacher_template(p), *split_scratchpad(add.scratchpad_target(*p, spaced=False)))
           for p in [(12, 34), (56, 78), (9, 91), (45, 45)]]
    before_t = [p.clone() for p in teacher.parameters()]
    before_s = [p.clone() for p in student.parameters()]
    for loss in ("sampled", "hard"):
        cd.distill(student, teacher, exs, RunConfig(max_steps=3, batch_size=2, lr=1e-2), loss=loss, pad_id=tok.pad_token_id)
    assert all(torch.equal(a, b) for a, b in zip(before_t, teacher.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_s, student.parameters()))
    with pytest.raises(ValueError, match="frozen"):
        cd.distill(student, student, exs, RunConfig(max_steps=1), pad_id=0)


def test_extractor_and_malformed_teacher_outputs(t5, monkeypatch):
    y = add.scratchpad_target(999, 1, spaced=False)
    assert split_scratchpad(y)[1] == "1000" and split_scratchpad(y)[0].endswith("</scratch>\n")
    y2 = add.scratchpad_target(123, 456, spaced=True)
    assert split_scratchpad(y2)[1] == "5 7 9"
    for bad in ("", "<scratch>\n1+2", "</scratch>\n", "</scratch>\n12a", "no scratchpad 12 x"):
        assert split_scratchpad(bad) is None
    model, tok = t5
    outs = [add.scratchpad_target(1, 2, spaced=False), "<scratch>\ntruncated", "garbage", add.scratchpad_target(3, 4, spaced=False)]
    monkeypatch.setattr(cd, "generate", lambda *a, **k: list(outs))
    exs, counts = cd.teacher_labels(model, tok, operation(True, False), [(1, 2), (5, 5), (6, 6), (3, 4)])
    assert counts == {"kept": 2, "malformed": 2, "n": 4}
    assert [tok.decode(e["labels"], skip_special_tokens=True) for e in exs] == ["3", "7"]


def test_bad_parameters_name_the_parameter():
    with pytest.raises(ValueError, match="method='cd_nope'"):
        cd.run(RunConfig(method="cd_nope"))
    with pytest.raises(ValueError, match="loss="):
        cd.run(RunConfig(method="cd_addition", dataset="addition", flags={"loss": "kl"}))
    with pytest.raises(ValueError, match="dataset="):
        cd.run(RunConfig(method="cd_spider", dataset="addition"))
    with pytest.raises(ValueError, match="mark_positions"):
        from knife_repro.cd_addition import settings
        settings(RunConfig(method="cd_addition", dataset="addition", flags={"mark_positions": "maybe"}))
    with pytest.raises(ValueError, match="scratchpad="):
        from knife_repro.cd_addition import settings
        settings(RunConfig(method="cd_addition", dataset="addition", flags={"scratchpad": "zigzag"}))
    with pytest.raises(ValueError, match="distribution="):
        from knife_repro.cd_instructions import raw_inputs
        raw_inputs(None, "sort", 3, "uniform")


# --- decoder-only students: one code path, the model's kind decides ---------------------------

def test_supervised_row_puts_labels_on_the_target_only():
    _, tok = load_causal("tiny-gpt2", seed=0)
    row = cd.supervised_row(tok, "Q: 12+34=", "46", causal=True)
    p = tok("Q: 12+34=", add_special_tokens=False).input_ids
    y = tok("46", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert row["input_ids"] == p + y and row["labels"] == [-100] * len(p) + y
    _, ttok = load_seq2seq("tiny-t5", seed=0, tokenizer="byte")
    s = cd.supervised_row(ttok, "Q: 12+34=", "46", causal=False)       # seq2seq: the rows the kit always built
    assert s["input_ids"] == ttok("Q: 12+34=").input_ids and s["labels"] == ttok("46", add_special_tokens=False).input_ids + [ttok.eos_token_id]


def test_kind_is_read_off_the_model(t5):
    g, gtok = load_causal("tiny-gpt2", seed=0)
    assert cd.is_causal(g) and not cd.is_causal(t5[0])
    # left as None, `generate` treats the GPT-2 as causal: it returns only new text, never the prompt
    out = cd.generate(g, gtok, ["Q: 12+34="], max_new_tokens=3)
    assert out == cd.generate(g, gtok, ["Q: 12+34="], causal=True, max_new_tokens=3)


def _tiny(monkeypatch, module, **changes):
    from dataclasses import replace
    monkeypatch.setitem(module.SCALES, "smoke", replace(module.SCALES["smoke"], **changes))


def test_cd_addition_runs_with_the_pretrained_causal_student(smollm2, tmp_path, monkeypatch):
    import knife_repro.cd_addition as cda
    _tiny(monkeypatch, cda, pretrain_steps=0, n_scratch=4, teacher_steps=1, teacher_batch=4, distill_per_round=4,
          distill_batch=4, n_test=4, gen_batch=4)
    cfg = RunConfig(method="cd_addition", dataset="addition", model="smollm2-135m", scale="smoke",
                    output_dir=str(tmp_path), flags={"baselines": False})
    rec = cd.run(cfg)
    assert rec["config"]["model"] == "smollm2-135m" and rec["metrics"]["details"]["teacher"]["n"] == 4
    assert 0 <= rec["metrics"]["post_distill"] <= 1


def test_cd_instructions_runs_with_the_pretrained_causal_student(smollm2, tmp_path, monkeypatch):
    import knife_repro.cd_instructions as cdi
    _tiny(monkeypatch, cdi, pretrain_steps=0, n_per_op=2, distill_batch=4, n_eval=2)
    # a pipeline check: two of the tasks and short generations (a pretrained LM rarely stops early by itself)
    monkeypatch.setattr(cdi, "TASKS", dict(list(cdi.TASKS.items())[:2]))
    monkeypatch.setattr(cdi, "_gen", lambda model, tok, prompts: [o.strip() for o in cdi.generate(model, tok, prompts, max_new_tokens=6)])
    monkeypatch.setattr(cdi, "teacher_labels", lambda *a, **k: cd.teacher_labels(*a, **{**k, "max_new_tokens": 6}))
    cfg = RunConfig(method="cd_instructions", dataset="instructions", model="smollm2-135m", scale="smoke",
                    output_dir=str(tmp_path))
    rec = cd.run(cfg)
    assert "naive_student2_correct" in rec["metrics"] and rec["config"]["model"] == "smollm2-135m"


def test_cd_spider_runs_with_the_pretrained_causal_student(smollm2, tmp_path, monkeypatch):
    import knife_repro.cd_spider as cds
    from knife_repro.core import DataNotFoundError
    from knife_repro.data import load as load_data
    from knife_repro.data import DataError
    try: load_data("spider", split="validation", require_db=True)
    except (DataNotFoundError, DataError) as e: pytest.skip(f"SPIDER databases not available: {e}")
    _tiny(monkeypatch, cds, n_dbs=1, n_raw=2, max_eval_per_db=2, batch=2, max_prompt_len=384, max_new_tokens=12)
    cfg = RunConfig(method="cd_spider", dataset="spider", model="smollm2-135m", scale="smoke",
                    output_dir=str(tmp_path), flags={"k": 2})
    rec = cd.run(cfg)
    assert rec["config"]["model"] == "smollm2-135m" and "post_distill" in " ".join(rec["metrics"])
    # every SPIDER number says how it was scored (issue 14)
    assert all(d["exact_set_match_mode"] == "official" and d["keep_distinct"] is True for d in rec["metrics"]["details"].values())


# --- typed configs: one per experiment module, one resolution for the notebooks, the CLI and the sweeps ----

def _cd_configs():
    from knife_repro.cd_addition import AdditionConfig
    from knife_repro.cd_instructions import InstructionsConfig
    from knife_repro.cd_spider import SpiderConfig
    return {"cd_addition": AdditionConfig, "cd_spider": SpiderConfig, "gd_spider": SpiderConfig,
            "cd_instructions": InstructionsConfig, "cd_internalise_instructions": InstructionsConfig}


def test_every_method_name_is_served_by_exactly_one_config():
    from knife_repro.core import _CONFIGS, method_config
    expected = _cd_configs()
    assert set(expected) == set(cd.METHODS)
    for m, cls in expected.items():
        assert method_config(m) is cls and RunConfig(method=m).flags == cls.defaults()
    owners = {}
    for cls in set(_CONFIGS.values()):
        for m in cls.methods: owners.setdefault(m, []).append(cls.__name__)
    assert all(len(v) == 1 for v in owners.values()), owners


# (method, dataset, the notebook's parameters, the same as --set items)
NB = {"cd_addition": ("addition", dict(loss="topk", n_samples=100, top_k=5, decoding="sample", mark_positions="",
                                       pretrain=False, scratchpad="", baselines=True),
                      ["loss=topk", "top_k=5", "pretrain=false"]),
      "cd_spider": ("spider", dict(k=4, loss="sampled", decoding="greedy", raw_inputs="examples"),
                    ["k=4", "raw_inputs=examples"]),
      "gd_spider": ("spider", dict(k=4, loss="sampled", decoding="greedy", raw_inputs="teacher"), ["k=4"]),
      "cd_instructions": ("instructions", dict(loss="hard", decoding="sample"), ["loss=hard"])}


@pytest.mark.parametrize("method", list(NB))
@pytest.mark.parametrize("scale", ["smoke", "paper"])
def test_cli_and_notebook_resolve_the_same_run(method, scale, tmp_path):
    from knife_repro.train import config_from_args
    dataset, params, sets = NB[method]
    cls = _cd_configs()[method]
    model = ""                                                  # the notebooks' default: the scale's model
    nb = cls.resolve(method=method, dataset=dataset, model=model or None, seed=1, scale=scale, output_dir=str(tmp_path),
                     **params)
    cli, _ = config_from_args(["--set", f"method={method}", f"dataset={dataset}", "seed=1", f"scale={scale}",
                               f"output_dir={tmp_path}", *sets])
    assert cli.to_dict() == nb.to_dict() and cli.run_id == nb.run_id
    assert nb.model == "default" and nb.lr == 3e-4 and nb.epochs == 1   # CD's own presets: not the QA cpu budget
    assert RunConfig.from_params(**{k: v for k, v in nb.to_dict().items() if k != "flags"}, **params).run_id == nb.run_id


def test_cd_presets_are_their_own():
    from knife_repro.core import CPU_BUDGET
    for m, cls in _cd_configs().items():
        c = cls.resolve(method=m, scale="cpu")
        assert c.model == "default" and c.lr != CPU_BUDGET["lr"] and c.max_train_samples == -1


@pytest.mark.parametrize("method, bad, name", [
    ("cd_addition", dict(loss="kl"), "loss"), ("cd_addition", dict(mark_positions="maybe"), "mark_positions"),
    ("cd_addition", dict(scratchpad="zigzag"), "scratchpad"), ("cd_addition", dict(top_k=0), "top_k"),
    ("cd_addition", dict(baselines="perhaps"), "baselines"), ("cd_spider", dict(k=0), "k="),
    ("gd_spider", dict(raw_inputs="web"), "raw_inputs"), ("cd_spider", dict(decoding="beam"), "decoding"),
    ("cd_instructions", dict(decoding="beam"), "decoding"), ("cd_instructions", dict(k=4), "^k: not a parameter"),
    ("cd_instructions", dict(distributions="naive,uniform"), "distributions"), ("cd_instructions", dict(tasks="web"), "tasks"),
    ("cd_instructions", dict(raw_inputs="web"), "raw_inputs"),
    ("cd_internalise_instructions", dict(task="task999_nope"), "task="), ("cd_internalise_instructions", dict(k=8), "^k: not")])
def test_bad_own_flag_raises_config_error_naming_it(method, bad, name):
    from knife_repro.train import config_from_args
    with pytest.raises(ConfigError, match=name):
        _cd_configs()[method].resolve(method=method, **bad)
    with pytest.raises(ConfigError, match=name):
        config_from_args(["--set", f"method={method}", *(f"{k}={v}" for k, v in bad.items())])


# --- instructions (23c): the wrong-id probe and the real NI-V2 tasks ----------------------------

def test_wrong_id_probe_is_never_the_tasks_old_id():
    from knife_repro.cd_instructions import probe_ids
    # by hand: association 1 = a0 b1 c2 d3, association 2 (the overwrite, a cyclic shift) = b0 c1 d2 a3.
    # task c: current id 1, old id 2 -> the first later id that was never c's is 3; "the next id" (the old probe) = 2.
    a1, a2 = {0: "a", 1: "b", 2: "c", 3: "d"}, {0: "b", 1: "c", 2: "d", 3: "a"}
    assert probe_ids(a2, "c", a1) == {"correct": 1, "wrong": 3, "wrong_old": 2, "wrong_unseen": 4}
    assert probe_ids(a2, "d", a1) == {"correct": 2, "wrong": 0, "wrong_old": 3, "wrong_unseen": 4}
    assert "wrong" not in probe_ids({0: "a", 1: "b"}, "a", {0: "b", 1: "a"})   # both ids were a's: no such wrong id


def test_a_student_that_kept_the_old_association_scores_high_only_on_the_old_id_probe():
    # a fake student that ignored the overwrite: with id i it does association 1's task i. The confounded probe
    # (the old id) would score it 100% "wrong association"; the fixed probe (an id never the task's) scores 0.
    from knife_repro.cd_instructions import TASKS, answer, association_scores, id_prompt
    tasks = list(TASKS)
    a1, a2 = dict(enumerate(tasks)), dict(enumerate(tasks[1:] + tasks[:1]))
    xs = ["dog cat emu", "7 3 9 1"]               # every task's answer differs on these inputs
    assert all(len({answer(t, x) for t in tasks}) == 4 for x in xs)
    def gen(prompts):
        out = []
        for p in prompts:
            i, x = int(p[1:p.index("]")]), p.split("Input: ", 1)[1]
            out.append(answer(a1[i], x) if i in a1 else "")
        return out
    evals = {t: [(x, answer(t, x)) for x in xs] for t in tasks}
    r = association_scores(gen, a2, evals, lambda t, o, g: o == g, old=a1, prompt=id_prompt)
    assert r["wrong_old"]["accuracy"] == 1.0 and r["wrong"]["accuracy"] == 0.0
    assert r["correct"]["accuracy"] == 0.0 and r["wrong_unseen"]["accuracy"] == 0.0
    assert all(v["wrong_id"] != v["wrong_old_id"] for v in r["per_task"].values())


def _ni_tiny(monkeypatch):
    import knife_repro.cd_instructions as cdi
    _tiny(monkeypatch, cdi, model="tiny-gpt2", tokenizer=None, pretrain_steps=0, n_per_op=2, distill_batch=4, n_eval=2,
          h1_eval=3, h1_distill=2, max_new_tokens=4, gen_batch=8, max_prompt_len=600)
    return cdi


def test_table1_on_the_ni_tasks_reports_the_three_probes(tmp_path, monkeypatch):
    cdi = _ni_tiny(monkeypatch)
    cfg = cdi.InstructionsConfig.resolve(method="cd_instructions", dataset="instructions", scale="smoke",
                                         output_dir=str(tmp_path), tasks="ni", distributions="mixed")
    rec = cd.run(cfg)
    m = rec["metrics"]
    assert {"mixed_student2_correct", "mixed_student2_wrong", "mixed_student2_wrong_old", "mixed_student2_wrong_unseen",
            "pre_distill_wrong_old", "teacher_correct"} <= set(m) and "naive_student2_correct" not in m
    per = m["details"]["mixed_student2"]["per_task"]
    assert set(per) == {"copa", "metawoz", "tweetqa", "rocstories"}
    # after the overwrite ([i] -> task i+1): copa's current id is 3, its old id 0, the wrong id 1
    assert (per["copa"]["correct_id"], per["copa"]["wrong_old_id"], per["copa"]["wrong_id"]) == (3, 0, 1)
    assert all(v["wrong_id"] not in (v["correct_id"], v["wrong_old_id"]) and v["wrong_unseen_id"] == 4 for v in per.values())
    assert m["details"]["mixed_student2"]["correct"]["n"] == 4 * 2


def test_hypothesis1_scores_rouge_l_on_held_out_instances(tmp_path, monkeypatch):
    cdi = _ni_tiny(monkeypatch)
    cfg = cdi.InstructionsConfig.resolve(method="cd_internalise_instructions", dataset="ni-v2", scale="smoke",
                                         output_dir=str(tmp_path), task="task828_copa_commonsense_cause_effect")
    rec = cd.run(cfg)
    m, out = rec["metrics"], rec["metrics"]["details"]["outputs"]
    assert all(0 <= m[k] <= 1 for k in ("teacher", "pre_distill", "post_distill")) and m["token_saving"] > 1
    held = {r["id"] for r in cdi.ni_split(cdi.load_ni_task("task828_copa_commonsense_cause_effect"), 3)[0]}
    assert set(out["id"]) == held and len(out["post_distill"]) == 3
    with pytest.raises(ValueError, match="dataset="):
        cd.run(cfg.replace(dataset="instructions"))


def test_ni_task_file_errors_name_the_file():
    from knife_repro.cd_instructions import load_ni_task
    with pytest.raises(FileNotFoundError, match="task999_nope.json"):
        load_ni_task("task999_nope")


def test_addition_pretrained_lm_at_cpu_scale_gets_its_own_settings():
    from knife_repro.cd_addition import AdditionConfig, SCALES, settings
    tiny = settings(AdditionConfig.resolve(method="cd_addition", dataset="addition", scale="cpu"))
    assert tiny == SCALES["cpu"] and tiny.pretrain_steps == 4000 and tiny.scratchpad == "columns"   # unchanged
    pre = settings(AdditionConfig.resolve(method="cd_addition", dataset="addition", scale="cpu", model="smollm2-135m"))
    # by hand: no stand-in pre-training, Nye's scratchpad, no position marks, the model's own tokenizer, 3 digits
    assert (pre.model, pre.pretrain_steps, pre.scratchpad, pre.mark_positions, pre.tokenizer, pre.n_digits) == \
        ("smollm2-135m", 0, "nye", False, None, 3)
    two = settings(AdditionConfig.resolve(method="cd_addition", dataset="addition", scale="cpu", model="smollm2-135m",
                                          n_digits=2))
    assert two.n_digits == 2 and two.scratchpad == "nye"
    with pytest.raises(ConfigError, match="n_digits"):
        AdditionConfig.resolve(method="cd_addition", n_digits=-1)
