"""Training throughput: our engine vs transformers' Trainer / Seq2SeqTrainer, same model, data, batch size and seed.

Trains the same model (same seed) on the same I->RO examples (question -> rationale + "So
the answer is X.": targets vary in length, as rationale training does) for one epoch with
each trainer, in one process, and prints real (non-pad) tokens per second and the ratio.
Rounds alternate the order to spread any warm-up effect; the ratio is the median of the
per-round ratios.

* T5 presets (tiny-t5, small-t5): `Seq2SeqTrainer` + `DataCollatorForSeq2Seq(tok, model=model)`.
* smollm2-135m (decoder-only): `encode_examples(..., causal=True)` rows, prompt + target in
  `input_ids`, labels -100 on the prompt; `Trainer` + `DataCollatorForSeq2Seq(tok,
  model=None, label_pad_token_id=-100)`, tokenizer padding on the right, HF's loss; our
  engine with the kit's `qa.lm_loss` (for a decoder-only model: the LM head on
  target positions only, `training.causal_lm_loss`).

Both sides batch by length: `train_sampling_strategy="group_by_length"` for HF (its
`LengthGroupedSampler`, on the length of `input_ids`), the engine's default grouping (on
input + label length) for ours. Real tokens: input tokens + target tokens for T5; the
prompt + target tokens of `input_ids` for the decoder-only model (targets counted once).

Loss check (on unless --no-check): one more epoch of each with the *same* batch order (HF
gets the engine's batches through its sampler) must give the same loss at every step, to
1e-4 (reported: first-step and largest per-step difference; T5 dropout off for it); the
timed rounds, each with its own batch order, report the epoch's mean loss of both.
Times are wall clock and CPU time of the process (steadier on a shared machine).

--same-batches: the timed rounds give HF the engine's batches too (the per-token difference
alone). --levers: the engine against itself, the defaults vs each speed lever switched
(see the "Speed levers" section of nbs/02_training.ipynb). --padding-at: padding of both
samplers for several dataset sizes, no training.

    .venv/bin/python bench/train_throughput.py [--model tiny-t5|small-t5|smollm2-135m] [--n N] [--batch B]
        [--rounds R] [--dataset strategyqa|openbookqa] [--threads T] [--no-check] [--same-batches]
        [--levers [all|KEY,KEY,...]] [--padding-at N1,N2,...]
"""
import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from knife_repro.baselines import encode_examples
from knife_repro.core import RunConfig, seed_everything
from knife_repro.data import load as load_data
from knife_repro.models import PRESETS, load_causal, load_seq2seq
from knife_repro.qa import lm_loss, subsample
from knife_repro.training import TrainOptions, causal_lm_loss, length_grouped_batches, train

CAUSAL = "causal"
DEFAULTS = {CAUSAL: dict(n=64, batch=8, lr=2e-5), "seq2seq": dict(n=512, batch=16, lr=1e-3)}


def kind_of(model: str) -> str:
    return CAUSAL if PRESETS[model].kind == "causal" else "seq2seq"


def load_model(args, **config):
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state()   # accelerate keeps one mixed-precision setting per process; the bf16 lever changes it
    seed_everything(0)
    return (load_causal if args.kind == CAUSAL else load_seq2seq)(args.model, seed=0, **config)


def real_tokens(data, kind):
    if kind == CAUSAL:
        return sum(len(e["input_ids"]) for e in data)
    return sum(len(e["input_ids"]) + len(e["labels"]) for e in data)


def ours_loss(args, target_only=True):
    "The kit's loss (`qa.lm_loss`: for a decoder-only model, the LM head on target positions only), or HF's."
    if target_only:
        return lm_loss
    return lambda models, batch: causal_lm_loss(models, batch, target_only=False)


def clocks():
    "(wall seconds, CPU seconds of this process): under a shared machine the CPU time is the steadier of the two."
    return time.perf_counter(), time.process_time()


def since(c0):
    w, c = clocks()
    return w - c0[0], c - c0[1]


def run_ours(data, args, target_only=True, steps=None, config=None, **opts):
    "((wall, CPU) seconds, per-step losses) of one epoch with our engine; `steps` gets (clocks, tokens so far) per step."
    model, _ = load_model(args, **(config or {}))
    cfg = RunConfig(method="bench", lr=args.lr, batch_size=args.batch, epochs=1, max_grad_norm=1.0)
    cbs = [lambda st, logs: steps.append((clocks(), st.tokens))] if steps is not None else []
    o = TrainOptions(progress=False, log_steps=1, count_label_tokens=args.kind != CAUSAL, callbacks=cbs, **opts)
    c0 = clocks()
    res = train({"model": model}, ours_loss(args, target_only), data, cfg, opts=o)
    return since(c0), [h["loss"] for h in res.state.history if h["kind"] == "train"]


class FixedOrder(torch.utils.data.Sampler):
    "A sampler that yields the given indices in the given order."
    def __init__(self, order): self.order = list(order)
    def __iter__(self): return iter(self.order)
    def __len__(self): return len(self.order)


def run_hf(data, tok, args, order=None, config=None):
    "One epoch with transformers' trainer as a user configures it; `order`: force this batch order (loss check)."
    from datasets import Dataset
    from transformers import (DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer,
                              TrainingArguments)
    model, _ = load_model(args, **(config or {}))
    causal = args.kind == CAUSAL
    base, Args = (Trainer, TrainingArguments) if causal else (Seq2SeqTrainer, Seq2SeqTrainingArguments)
    losses = []

    class Recording(base):
        def training_step(self, *a, **kw):
            loss = super().training_step(*a, **kw)
            losses.append(float(loss))
            return loss

        def _get_train_sampler(self, *a, **kw):
            return super()._get_train_sampler(*a, **kw) if order is None else FixedOrder(order)

    if causal:   # pre-labelled rows: pad input_ids/attention_mask with the tokenizer, labels with -100, on the right
        tok.padding_side = "right"
        collator = DataCollatorForSeq2Seq(tok, model=None, label_pad_token_id=-100)
    else:
        collator = DataCollatorForSeq2Seq(tok, model=model)
    with tempfile.TemporaryDirectory() as d:
        targs = Args(output_dir=d, per_device_train_batch_size=args.batch, num_train_epochs=1,
                     learning_rate=args.lr, max_grad_norm=1.0, lr_scheduler_type="linear",
                     train_sampling_strategy="group_by_length", report_to=[], save_strategy="no",
                     logging_strategy="no", disable_tqdm=True, use_cpu=not torch.cuda.is_available(), seed=0,
                     dataloader_num_workers=0)
        trainer = Recording(model=model, args=targs, train_dataset=Dataset.from_list(data), data_collator=collator)
        c0 = clocks()
        trainer.train()
        return since(c0), losses


def padding_factors(data, kind, batch, seeds=20):
    "(ours, HF) computed tokens / real tokens: the engine's batches vs HF's LengthGroupedSampler (mean over seeds)."
    from transformers.trainer_pt_utils import get_length_grouped_indices
    ins = [len(e["input_ids"]) for e in data]
    labs = [0 if kind == CAUSAL else len(e["labels"]) for e in data]
    real = sum(ins) + sum(labs)
    cost = lambda bs: sum(len(b) * (max(ins[i] for i in b) + max(labs[i] for i in b)) for b in bs) / real
    ours = cost(length_grouped_batches([len(e["input_ids"]) + len(e["labels"]) for e in data], batch, seed=0))
    hf = []
    for s in range(seeds):   # HF groups on len(input_ids) only; its mega-batches hold min(n // (4 batch), 50) batches
        idx = get_length_grouped_indices(ins, batch, generator=torch.Generator().manual_seed(s))
        hf.append(cost([idx[i:i + batch] for i in range(0, len(idx), batch)]))
    return ours, statistics.mean(hf)


def load_line():
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def loss_check(data, tok, args):
    "Both trainers on the engine's batch order: the per-step losses must agree."
    n = len(data) // args.batch * args.batch   # full batches only, so HF's sampler cuts the same batches
    data = data[:n]
    lengths = [len(e["input_ids"]) + len(e["labels"]) for e in data]
    batches = length_grouped_batches(lengths, args.batch, seed=0, epoch=0)
    n_tok = real_tokens(data, args.kind)
    # dropout draws differ between the two loops, so the check runs without it (tiny-t5 and smollm2-135m have none)
    config = {"dropout_rate": 0.0} if args.kind != CAUSAL else {}
    so, lo = run_ours(data, args, config=config)
    sh, lh = run_hf(data, tok, args, order=[i for b in batches for i in b], config=config)
    diffs = [abs(a - b) for a, b in zip(lo, lh)]
    print(f"loss check, same batch order ({n} examples, {len(lo)} steps): first step ours {lo[0]:.6f} "
          f"HF {lh[0]:.6f} (|diff| {diffs[0]:.1e}); largest per-step |diff| {max(diffs):.1e}; "
          f"mean loss ours {statistics.mean(lo):.6f} HF {statistics.mean(lh):.6f}")
    print(f"  same batches, so the same padding: ours {n_tok / so[0]:.0f} tokens/s, HF {n_tok / sh[0]:.0f} tokens/s, "
          f"ratio {sh[0] / so[0]:.2f}x wall, {sh[1] / so[1]:.2f}x CPU time (one run each, not alternated)")
    assert len(lo) == len(lh) and max(diffs) < 1e-4, "the two trainers disagree on the same batches"


LEVERS = {   # key: (label, run_ours keywords); the first is the reference
    "defaults": ("defaults (all default levers on)", {}),
    "full_head": ("full LM head (HF's loss, target_only=False)", {"target_only": False}),
    "left": ("left padding", {"padding_side": "left"}),
    "no_group": ("no length grouping (random batches)", {"group_by_length": False}),
    "no_fused": ("AdamW for-loop (fused_adamw=False)", {"fused_adamw": False}),
    "kv_cache": ("KV cache kept (no_kv_cache=False)", {"no_kv_cache": False}),
    "multiple8": ("pad to a multiple of 8", {"pad_to_multiple_of": 8}),
    "eager": ("eager attention", {"attn_implementation": "eager"}),
    "threads1": ("1 thread", {"threads": 1}),
    "threads2": ("2 threads", {"threads": 2}),
    "compile": ("torch.compile (dynamic)", {"compile": True}),
    "bf16": ("bf16 autocast on CPU (opt-in: changes numerics)", {"bf16": True}),
    "freeze": ("freeze embeddings + tied head (opt-in: changes training)", {"freeze_embeddings": True}),
    "freeze_full": ("freeze embeddings, full LM head", {"freeze_embeddings": True, "target_only": False}),
    "baseline": ("all off (full head, for-loop AdamW, KV cache, random batches)",
                 {"target_only": False, "fused_adamw": False, "no_kv_cache": False, "group_by_length": False}),
}
CAUSAL_ONLY = ("full_head", "left", "freeze_full", "baseline")


def levers(data, n_tok, args):
    "Our engine against itself: the defaults vs each lever switched, alternating rounds."
    keys = [k for k in LEVERS if k not in ("compile", "threads1", "threads2", "freeze_full", "baseline", "bf16")] \
        if args.levers == "all" else ["defaults"] + [k for k in args.levers.split(",") if k != "defaults"]
    keys = [k for k in keys if args.kind == CAUSAL or k not in CAUSAL_ONLY]
    losses = {}
    # tokens/s: wall epoch, CPU epoch, wall after step 1 (compilation, first-call costs excluded)
    tps = {k: [] for k in keys}
    for r in range(args.rounds):
        got = {}
        for k in (keys if r % 2 == 0 else keys[::-1]):
            steps = []
            (w, c), lo = run_ours(data, args, steps=steps, **LEVERS[k][1])
            ((w1, _), n1), ((wn, _), nn) = steps[0], steps[-1]
            got[k] = (n_tok / w, n_tok / c, (nn - n1) / (wn - w1))
            losses[k] = lo
            print(f"  levers round {r}: {LEVERS[k][0]:58} {got[k][0]:6.0f} tokens/s wall, {got[k][1]:6.0f} per CPU-s, "
                  f"{got[k][2]:6.0f} wall after step 1 ({w:.1f} s)  [{load_line()}]", flush=True)
        for k in keys:
            tps[k].append(tuple(x / d for x, d in zip(got[k], got["defaults"])) + got[k])
    ref = losses["defaults"]
    med = lambda k, i: statistics.median(t[i] for t in tps[k])
    print("\n| lever (vs the defaults) | tokens/s wall | speed vs defaults: wall | CPU time | wall after step 1 | "
          "first-step loss diff | largest per-step loss diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        lo = losses[k]
        print(f"| {LEVERS[k][0]} | {med(k, 3):,.0f} | {med(k, 0):.2f}× | {med(k, 1):.2f}× | {med(k, 2):.2f}× | "
              f"{abs(lo[0] - ref[0]):.1e} | {max(abs(a - b) for a, b in zip(lo, ref)):.1e} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="examples (default: 512 for T5, 64 for smollm2-135m)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: 16 for T5, 8 for smollm2-135m)")
    ap.add_argument("--model", default="tiny-t5", help="tiny-t5 | small-t5 | smollm2-135m")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dataset", default="strategyqa", help="strategyqa | openbookqa")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--no-check", action="store_true", help="skip the same-batch-order loss check")
    ap.add_argument("--same-batches", action="store_true",
                    help="timed rounds give HF the engine's batches (same padding: the per-token difference only)")
    ap.add_argument("--padding-at", default=None, metavar="N1,N2,...",
                    help="only print the padding of both samplers for these numbers of examples (no training)")
    ap.add_argument("--levers", nargs="?", const="all", default=None,
                    help="measure the engine's speed levers instead of HF: 'all' (no compile, no thread changes) "
                         f"or a comma list of {', '.join(LEVERS)}")
    args = ap.parse_args()
    args.kind = kind_of(args.model)
    for k, v in DEFAULTS[args.kind].items():
        if getattr(args, k) is None: setattr(args, k, v)
    torch.set_num_threads(args.threads)
    _, tok = load_model(args)
    if args.padding_at:
        for n in map(int, args.padding_at.split(",")):
            d = encode_examples(tok, subsample(load_data(args.dataset)["train"], n, seed=0), "ft_iro",
                                max_source_len=256, max_target_len=256, causal=args.kind == CAUSAL)
            o, h = padding_factors(d, args.kind, args.batch)
            print(f"{len(d):5} examples, batch {args.batch}: computed/real tokens ours {o:.3f}, HF group_by_length {h:.3f} "
                  f"(HF / ours {h / o:.3f})")
        return
    examples = subsample(load_data(args.dataset)["train"], args.n, seed=0)
    data = encode_examples(tok, examples, "ft_iro", max_source_len=256, max_target_len=256, causal=args.kind == CAUSAL)
    n_tok = real_tokens(data, args.kind)
    pad_o, pad_h = padding_factors(data, args.kind, args.batch)
    hf_name = "Trainer" if args.kind == CAUSAL else "Seq2SeqTrainer"
    print(f"{len(data)} {args.dataset} I->RO examples, {n_tok} real tokens, batch {args.batch}, "
          f"model {args.model}, lr {args.lr}, {torch.get_num_threads()} threads; {load_line()}")
    print(f"computed / real tokens (padding): ours {pad_o:.3f}, HF group_by_length {pad_h:.3f} (mean of 20 sampler seeds)")
    warm = data[:args.batch]   # one batch each, untimed: first-call costs (allocator, imports, lazy init) land here
    run_ours(warm, args)
    if args.levers:
        levers(data, n_tok, args)
        print(f"done; {load_line()}")
        return
    run_hf(warm, tok, args)
    if not args.no_check:
        loss_check(data, tok, args)
    ours, hf, ratios, cpu_ratios, mean_loss = [], [], [], [], {}
    order_hf = None
    if args.same_batches:
        lengths = [len(e["input_ids"]) + len(e["labels"]) for e in data]
        order_hf = [i for b in length_grouped_batches(lengths, args.batch, seed=0) for i in b]
        assert len(data) % args.batch == 0, "--same-batches needs --n to be a multiple of --batch"
        print("timed rounds: HF gets the engine's batches (--same-batches)")
    for r in range(args.rounds):
        order = ["hf", "ours"] if r % 2 == 0 else ["ours", "hf"]
        got = {}
        for name in order:
            (w, c), lo = run_ours(data, args) if name == "ours" else run_hf(data, tok, args, order=order_hf)
            got[name] = (n_tok / w, n_tok / c)
            mean_loss[name] = statistics.mean(lo)
            print(f"round {r}: {name:4} {n_tok / w:8.0f} tokens/s ({w:.1f} s; {n_tok / c:.0f} per CPU-second), "
                  f"epoch mean loss {mean_loss[name]:.4f}  [{load_line()}]", flush=True)
        ours.append(got["ours"][0]); hf.append(got["hf"][0])
        ratios.append(got["ours"][0] / got["hf"][0]); cpu_ratios.append(got["ours"][1] / got["hf"][1])
    print(f"median: ours {statistics.median(ours):.0f} tokens/s, {hf_name} {statistics.median(hf):.0f} tokens/s, "
          f"ratio {statistics.median(ratios):.2f}x (median of per-round ratios {', '.join(f'{x:.2f}' for x in ratios)})")
    print(f"CPU-time ratio (tokens per CPU-second of the process): {statistics.median(cpu_ratios):.2f}x "
          f"(per round {', '.join(f'{x:.2f}' for x in cpu_ratios)})")
    print(f"best of rounds: ours {max(ours):.0f}, {hf_name} {max(hf):.0f}, ratio {max(ours) / max(hf):.2f}x")
    print(f"epoch mean loss (each with its own batch order): ours {mean_loss['ours']:.4f}, {hf_name} {mean_loss['hf']:.4f}")
    print(f"done; {load_line()}")


if __name__ == "__main__":
    main()
