"The one training engine: learning, determinism, resume, batching, frozen models."
import torch
import pytest

from conftest import lm_loss, toy_task
from knife_repro.core import RunConfig
from knife_repro.training import (TrainOptions, causal_lm_loss, latest_checkpoint, length_grouped_batches, pad_collate,
                                  train)

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


# ---- speed levers: the ones on by default must not change the loss curve; the loss-side one must not change
# ---- the loss or its gradients

def _history_losses(opts, seed=8, n_train=64):
    models, _, tr, _ = toy_task(seed, n_train=n_train)
    res = train(models, lm_loss, tr, CFG, opts=opts)
    return [h["loss"] for h in res.state.history if h["kind"] == "train"], models["model"]


def test_default_speed_levers_keep_the_loss_curve():
    "Fused AdamW and no KV cache (on by default) vs both off: same losses step by step (to 1e-5)."
    on, m_on = _history_losses(TrainOptions(log_steps=1))
    off, m_off = _history_losses(TrainOptions(log_steps=1, fused_adamw=False, no_kv_cache=False))
    assert len(on) == len(off) == CFG.epochs * 4
    assert max(abs(a - b) for a, b in zip(on, off)) < 1e-5
    sd_on, sd_off = m_on.state_dict(), m_off.state_dict()
    assert all(torch.allclose(sd_on[k], sd_off[k], atol=1e-5) for k in sd_on)


def test_speed_settings_are_undone_after_training():
    models, _, tr, _ = toy_task(9, n_train=32)
    m = models["model"]
    threads, attn = torch.get_num_threads(), m.config._attn_implementation
    seen = []
    def loss(ms, batch):
        mm = ms["model"]
        seen.append((mm.config.use_cache, mm.get_input_embeddings().weight.requires_grad, torch.get_num_threads(),
                     mm.config._attn_implementation))
        return lm_loss(ms, batch)
    emb = m.get_input_embeddings().weight.detach().clone()
    train(models, loss, tr, CFG.replace(epochs=1),
          opts=TrainOptions(freeze_embeddings=True, threads=1, attn_implementation="eager"))
    assert set(seen) == {(False, False, 1, "eager")}
    assert torch.equal(emb, m.get_input_embeddings().weight)               # frozen while training
    assert m.config.use_cache and m.get_input_embeddings().weight.requires_grad
    assert torch.get_num_threads() == threads and m.config._attn_implementation == attn


def test_padding_options_of_the_default_collate():
    batch = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [9]}, {"input_ids": [5], "attention_mask": [1], "labels": [9, 9]}]
    assert pad_collate(batch, pad_to_multiple_of=8)["input_ids"].shape == (2, 8)
    assert pad_collate(batch, left=True)["input_ids"].tolist() == [[5, 6, 7], [0, 0, 5]]
    with pytest.raises(ValueError, match="padding_side"):
        models, _, tr, _ = toy_task(0, n_train=16)
        train(models, lm_loss, tr, CFG, opts=TrainOptions(padding_side="middle"))


def _causal_batch(tok, texts, prompt_tokens):
    rows = [tok(t).input_ids for t in texts]
    return pad_collate([{"input_ids": r, "attention_mask": [1] * len(r), "labels": [-100] * prompt_tokens + r[prompt_tokens:]}
                        for r in rows], pad_id=tok.pad_token_id)


def _loss_and_grads(model, batch, target_only):
    model.zero_grad(set_to_none=True)
    loss, _ = causal_lm_loss({"model": model}, batch, target_only=target_only)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_target_only_lm_head_same_loss_and_gradients_tiny_gpt2():
    from knife_repro.models import load_causal
    model, tok = load_causal("tiny-gpt2", seed=0)
    model.train()
    batch = _causal_batch(tok, ["Is 41 bigger than 17? yes", "Is 3 bigger than 8? no, it is not", "Is 5 odd? yes"], 5)
    (lf, gf), (lt, gt) = _loss_and_grads(model, batch, False), _loss_and_grads(model, batch, True)
    assert torch.allclose(lf, lt, atol=1e-6, rtol=0)
    assert gf.keys() == gt.keys() and all(torch.allclose(gf[k], gt[k], atol=1e-6) for k in gf)


def test_target_only_lm_head_same_loss_and_gradients_smollm2(smollm2):
    "The pretrained Llama-architecture preset, tied 49k-vocab head, right-padded prompt + target rows."
    import copy
    model, tok = smollm2
    model = copy.deepcopy(model).train()
    batch = _causal_batch(tok, ["question: Is the sky blue? choices: (A) yes (B) no Air scatters blue light. So the answer is yes.",
                                "question: Can fish fly? choices: (A) yes (B) no Fish swim. So the answer is no."], 12)
    assert (batch["attention_mask"] == 0).any()                            # one row is padded
    (lf, gf), (lt, gt) = _loss_and_grads(model, batch, False), _loss_and_grads(model, batch, True)
    assert torch.allclose(lf, lt, atol=1e-5, rtol=0)
    worst = max(float((gf[k] - gt[k]).abs().max() / (gf[k].abs().max() + 1e-12)) for k in gf)
    assert gf.keys() == gt.keys() and worst < 1e-4, worst


def test_causal_token_count_counts_targets_once():
    from knife_repro.training import _count_tokens
    b = pad_collate([{"input_ids": [1, 2, 3, 4], "attention_mask": [1] * 4, "labels": [-100, -100, 3, 4]}])
    assert _count_tokens(b) == 6 and _count_tokens(b, labels=False) == 4
