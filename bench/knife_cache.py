"""KNIFE student epoch time: teacher states cached on disk vs recomputed every step, in one process.

.venv/bin/python bench/knife_cache.py [--model tiny-t5|small-t5] [--dataset strategyqa] [--n 256] [--rounds 3] [--threads 1]

Both arms train the same student (same seed) for one epoch through the engine on the same
rows, batch 16, KD In+Out; rounds alternate the order. The cached arm's one-time cost
(computing and writing the teacher states) is printed separately; its epoch reads them
from the cache file, as every student epoch after the first does.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from knife_repro.qa import subsample
from knife_repro.core import RunConfig, seed_everything
from knife_repro.data import load as load_data
from knife_repro.knife import ChoiceScorer, cached_teacher_states, choice_collate, encode_choices, make_student_loss
from knife_repro.models import load_seq2seq
from knife_repro.training import TrainOptions, train


def epoch(student0, teacher, rows, cfg, pad, cached_states=None) -> tuple[float, float]:
    "Seconds of one student epoch and its final training loss."
    student = copy.deepcopy(student0)
    models = {"student": student}
    if cached_states is None:
        models["teacher"] = teacher
        data = rows
    else:
        data = [{**r, **s} for r, s in zip(rows, cached_states)]
    t0 = time.perf_counter()
    res = train(models, make_student_loss("in+out"), data, cfg, collate=lambda ex: choice_collate(ex, pad),
                lengths=[sum(map(len, r["teacher_input_ids"])) for r in rows], opts=TrainOptions(progress=False))
    dt = time.perf_counter() - t0
    return dt, [h["loss"] for h in res.state.history if h["kind"] == "train"][-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-t5")
    ap.add_argument("--dataset", default="strategyqa")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: min(2, cpus)); 1 on a shared, loaded machine")
    a = ap.parse_args()
    torch.set_num_threads(a.threads or min(2, os.cpu_count() or 1))
    seed_everything(0)
    t5, tok = load_seq2seq(a.model, seed=0)
    teacher = ChoiceScorer(t5).eval()
    for p in teacher.parameters(): p.requires_grad_(False)
    student0 = ChoiceScorer(load_seq2seq(a.model, seed=1)[0])
    ds = subsample(load_data(a.dataset)["train"], a.n, 1.0, 0)
    rows = [encode_choices(tok, e, max_source_len=256) for e in ds]
    cfg = RunConfig(method="knife", dataset=a.dataset, model=a.model, batch_size=16, epochs=1, lr=1e-3)
    root = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    states, hit = cached_teacher_states(teacher, rows, root=root, pad_id=tok.pad_token_id)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    states, hit = cached_teacher_states(teacher, rows, root=root, pad_id=tok.pad_token_id)
    reload = time.perf_counter() - t0
    assert hit
    size = sum(p.stat().st_size for p in root.iterdir()) / 2**20
    n_tok = sum(map(len, (x for r in rows for x in r["teacher_input_ids"])))
    print(f"{a.model}, {a.dataset}: {len(rows)} examples, {sum(len(r['labels']) for r in rows)} rows, "
          f"{n_tok} teacher input tokens; threads {torch.get_num_threads()}")
    print(f"teacher-state cache: build {build:.2f} s (once), reload {reload:.2f} s, {size:.1f} MiB on disk")
    cached, recomputed, losses = [], [], []
    for r in range(a.rounds):
        order = ("cached", "recomputed") if r % 2 == 0 else ("recomputed", "cached")
        for arm in order:
            dt, loss = epoch(student0, teacher, rows, cfg, tok.pad_token_id, states if arm == "cached" else None)
            (cached if arm == "cached" else recomputed).append(dt); losses.append((arm, loss))
            print(f"round {r} {arm:>10}: epoch {dt:6.2f} s, last logged loss {loss:.6f}")
    ratios = [b / c for c, b in zip(cached, recomputed)]   # per round
    print(f"recomputed / cached epoch time: median of rounds {statistics.median(ratios):.2f}x, "
          f"best vs best {min(recomputed) / min(cached):.2f}x "
          f"(cached median {statistics.median(cached):.2f} s, recomputed median {statistics.median(recomputed):.2f} s)")
    lc = [l for arm, l in losses if arm == "cached"]; lr = [l for arm, l in losses if arm == "recomputed"]
    print(f"same training either way: |loss cached - loss recomputed| = {abs(lc[0] - lr[0]):.2e}")


if __name__ == "__main__":
    main()
