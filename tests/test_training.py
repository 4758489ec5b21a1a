"The one training engine: learning, determinism, resume, batching, frozen models."
import torch
import pytest

from conftest import lm_loss, toy_task
from knife_repro.core import RunConfig
from knife_repro.training import (TrainOptions, latest_checkpoint, length_grouped_batches, pad_collate, train)

CFG = RunConfig(method="test", dataset="toy", lr=3e-3, batch_size=16, epochs=2)


def test_short_run_lowers_the_loss():
    models, tok, tr, ev = toy_task(0, n_train=128)
    before = sum(lm_loss(models, pad_collate(ev[i:i + 16]))[0].item() for i in range(0, 32, 16))
    res = train(models, lm_loss, tr, CFG.replace(epochs=3), eval_data=ev)
    assert res.final_metrics["eval_loss"] < before / 2 / 2   # mean of two batches, halved at least
    assert res.state.step == 3 * 8 and res.tokens_per_s > 0


def test_same_seed_same_metrics():
    runs = []
    for _ in range(2):
        models, tok, tr, ev = toy_task(1)
        runs.append(train(models, lm_loss, tr, CFG.replace(seed=1), eval_data=ev, opts=TrainOptions(log_steps=1)))
    assert runs[0].state.history == runs[1].state.history
    assert runs[0].final_metrics == runs[1].final_metrics


class Killed(Exception):
    pass


def test_resume_after_checkpoint_equals_uninterrupted(tmp_path):
    cfg = CFG.replace(grad_accum=2)   # checkpoints fall on optimiser-step boundaries
    models, _, tr, ev = toy_task(2)
    full = train(models, lm_loss, tr, cfg, eval_data=ev, opts=TrainOptions(output_dir=tmp_path / "a", save_steps=2, log_steps=1))
    ref = {k: v.clone() for k, v in models["model"].state_dict().items()}

    def die(st, logs):
        if st.step == 3: raise Killed
    models, _, tr, ev = toy_task(2)
    with pytest.raises(Killed):
        train(models, lm_loss, tr, cfg, eval_data=ev, opts=TrainOptions(output_dir=tmp_path / "b", save_steps=2, log_steps=1, callbacks=[die]))
    assert latest_checkpoint(tmp_path / "b").name == "step-00000002"
    models, _, tr, ev = toy_task(2)   # a fresh process would start from fresh weights too
    resumed = train(models, lm_loss, tr, cfg, eval_data=ev, opts=TrainOptions(output_dir=tmp_path / "b", save_steps=2, log_steps=1))
    assert all(torch.equal(ref[k], v) for k, v in models["model"].state_dict().items())
    assert resumed.final_metrics == full.final_metrics and resumed.state.history == full.state.history


def test_length_grouping_cuts_padding_and_covers_every_example():
    lengths = [(i * 37) % 120 + 1 for i in range(1000)]
    waste = lambda bs: sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in bs)
    g = length_grouped_batches(lengths, 16, seed=0)
    r = length_grouped_batches(lengths, 16, seed=0, group=False)
    assert sorted(i for b in g for i in b) == list(range(1000))
    assert waste(g) * 10 < waste(r)
    shards = [length_grouped_batches(lengths, 16, 0, rank=k, world=2) for k in range(2)]
    assert len(shards[0]) == len(shards[1]) and not set(map(tuple, shards[0])) & set(map(tuple, shards[1]))


def test_frozen_models_do_not_change_and_stay_in_eval_mode():
    models, tok, tr, ev = toy_task(3)
    teacher, _, _, _ = toy_task(4)
    t = teacher["model"].requires_grad_(False)
    before = {k: v.clone() for k, v in t.state_dict().items()}
    seen = []
    def loss(ms, batch):
        seen.append(ms["teacher"].training)
        with torch.no_grad():
            tl = ms["teacher"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).logits
        out = ms["model"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        return ((out.logits - tl) ** 2).mean(), {}
    train({"model": models["model"], "teacher": t}, loss, tr, CFG.replace(epochs=1))
    assert not any(seen)
    assert all(torch.equal(before[k], v) for k, v in t.state_dict().items())


def test_early_stopping_and_best_weights(tmp_path):
    models, tok, tr, ev = toy_task(5)
    calls = iter([0.5, 0.9, 0.4, 0.3, 0.2, 0.1])   # best at the second evaluation, then worse
    res = train(models, lm_loss, tr, CFG.replace(epochs=6, early_stopping_patience=2),
                eval_fn=lambda ms: {"accuracy": next(calls)},
                opts=TrainOptions(output_dir=tmp_path, metric_for_best="accuracy"))
    assert res.state.stopped_early and res.state.epoch == 4 and res.best_metric == 0.9
    assert res.best_metrics["step"] == 2 * 6


@pytest.mark.parametrize("opt,sched", [("adafactor", "constant"), ("adamw", "linear")])
def test_optimisers_and_schedules(opt, sched):
    models, tok, tr, ev = toy_task(6, n_train=32)
    res = train(models, lm_loss, tr, CFG.replace(optimizer=opt, scheduler=sched, warmup_ratio=0.5, epochs=2),
                opts=TrainOptions(log_steps=1))
    lrs = [h["lr"] for h in res.state.history if h["kind"] == "train"]
    assert lrs[0] < lrs[1]                       # warm-up
    if sched == "linear": assert lrs[-1] < max(lrs)
    else: assert lrs[-1] == max(lrs)


def test_checkpoints_are_cleaned_up_and_never_resumed_by_another_run(tmp_path):
    models, tok, tr, ev = toy_task(7, n_train=32)
    with pytest.raises(Killed):
        def die(st, logs): raise Killed
        train(models, lm_loss, tr, CFG, opts=TrainOptions(output_dir=tmp_path, save_steps=1, callbacks=[die]))
    assert latest_checkpoint(tmp_path) is not None                       # a killed run keeps its checkpoint
    with pytest.raises(ValueError, match="checkpoint of run"):
        train(models, lm_loss, tr, CFG.replace(lr=1e-4), opts=TrainOptions(output_dir=tmp_path))
    res = train(models, lm_loss, tr, CFG, eval_data=ev, opts=TrainOptions(output_dir=tmp_path))
    assert res.state.step == CFG.epochs * 2                               # resumed, then finished
    assert latest_checkpoint(tmp_path) is None and (tmp_path / "best" / "model.safetensors").is_file()
