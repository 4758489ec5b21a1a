"""Training throughput: our engine vs transformers' Seq2SeqTrainer, same model, data and batch size.

Trains the same tiny T5 (same seed) on the same StrategyQA I->RO examples (question ->
facts + answer: targets vary in length, as rationale training does) for one epoch with
each trainer, in one process, and prints real (non-pad) tokens per second and the ratio.
Rounds alternate the order to spread any warm-up effect. Goal: ratio >= 1.2.

    .venv/bin/python bench/train_throughput.py [--n 512] [--batch 16] [--model tiny-t5] [--rounds 2]
"""
import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from knife_repro.baselines import encode_examples, seq2seq_lm_loss, subsample
from knife_repro.core import RunConfig, seed_everything
from knife_repro.data import load as load_data
from knife_repro.models import load_seq2seq
from knife_repro.training import TrainOptions, train


def real_tokens(data):
    return sum(len(e["input_ids"]) + len(e["labels"]) for e in data)


def run_ours(data, args):
    seed_everything(0)
    model, _ = load_seq2seq(args.model, seed=0)
    cfg = RunConfig(method="bench", lr=1e-3, batch_size=args.batch, epochs=1, max_grad_norm=1.0)
    t0 = time.perf_counter()
    train({"model": model}, seq2seq_lm_loss, data, cfg, opts=TrainOptions(progress=False, log_steps=10**9))
    return time.perf_counter() - t0


def run_hf(data, tok, args):
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments
    seed_everything(0)
    model, _ = load_seq2seq(args.model, seed=0)
    with tempfile.TemporaryDirectory() as d:
        targs = Seq2SeqTrainingArguments(output_dir=d, per_device_train_batch_size=args.batch, num_train_epochs=1,
                                         learning_rate=1e-3, max_grad_norm=1.0, lr_scheduler_type="linear",
                                         report_to=[], save_strategy="no", logging_strategy="no",
                                         disable_tqdm=True, use_cpu=not torch.cuda.is_available(), seed=0,
                                         dataloader_num_workers=0)
        trainer = Seq2SeqTrainer(model=model, args=targs, train_dataset=Dataset.from_list(data),
                                 data_collator=DataCollatorForSeq2Seq(tok, model=model))
        t0 = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--model", default="tiny-t5")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    dd = load_data("strategyqa")
    _, tok = load_seq2seq(args.model)
    data = encode_examples(tok, subsample(dd["train"], args.n, seed=0), "ft_iro", max_source_len=256, max_target_len=256)
    n_tok = real_tokens(data)
    print(f"{len(data)} StrategyQA I->RO examples, {n_tok} real tokens, batch {args.batch}, model {args.model}, "
          f"{torch.get_num_threads()} threads")
    ours, hf = [], []
    for r in range(args.rounds):
        order = [("ours", ours), ("hf", hf)] if r % 2 else [("hf", hf), ("ours", ours)]
        for name, acc in order:
            s = run_ours(data, args) if name == "ours" else run_hf(data, tok, args)
            acc.append(n_tok / s)
            print(f"round {r}: {name:4} {n_tok / s:8.0f} tokens/s ({s:.1f} s)")
    o, h = statistics.median(ours), statistics.median(hf)
    print(f"median: ours {o:.0f} tokens/s, Seq2SeqTrainer {h:.0f} tokens/s, ratio {o / h:.2f}x (goal >= 1.2x)")
    print(f"best of rounds: ours {max(ours):.0f}, Seq2SeqTrainer {max(hf):.0f}, ratio {max(ours) / max(hf):.2f}x")


if __name__ == "__main__":
    main()
