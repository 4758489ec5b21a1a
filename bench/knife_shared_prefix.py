"""KNIFE on a decoder-only LM: each choice row read in full vs the choices' shared prefix read once, in one process.

.venv/bin/python bench/knife_shared_prefix.py [--model smollm2-135m] [--dataset openbookqa] [--n 32] [--batch 8] [--rounds 3] [--threads 1]

The same teacher rows ([FTR ; task ; answer] per choice, bottleneck mask) and student rows ([task ; answer]),
batch `--batch` examples, through `knife.full_causal_forward` (the baseline: one row per choice, the way the
4D-mask formulation is usually written) and `knife.shared_prefix_forward` (the default of `causal_forward`):
(a) scoring, no gradients, as in evaluation and teacher-state caching; (b) forward + backward of the teacher's
training loss (cross-entropy over the choices' scores). Rounds alternate the order; the ratio is the median of
the per-round ratios of process CPU time (steadier than wall time when other jobs share the cores). Before
timing, the two paths' row scores are compared.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import torch.nn.functional as F

from knife_repro.core import seed_everything
from knife_repro.data import load as load_data
from knife_repro.knife import (ChoiceScorer, causal_collate, choice_logits, encode_causal_choices, full_causal_forward,
                               shared_prefix_forward)
from knife_repro.models import load_causal
from knife_repro.qa import subsample


def run(fn, scorer, batches, key, grad: bool) -> float:
    "Process CPU seconds of one pass over `batches` (forward, or forward + backward of the choice cross-entropy)."
    t0 = time.process_time()
    for b in batches:
        ids, seg = b[f"{key}input_ids"], b[f"{key}segments"]
        if grad:
            out = fn(scorer, ids, seg, True)
            F.cross_entropy(choice_logits(out["rows"], b["choice_mask"]), b["answer"]).backward()
            scorer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(): fn(scorer, ids, seg, True)
    return time.process_time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dataset", default="openbookqa")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seed_everything(0)
    lm, tok = load_causal(a.model, seed=0)
    scorer = ChoiceScorer(lm, "loglik_mean")
    ds = subsample(load_data(a.dataset)["train"], a.n, 1.0, 0)
    rows = [encode_causal_choices(tok, e, max_source_len=256) for e in ds]
    batches = [causal_collate(rows[s:s + a.batch], tok.pad_token_id) for s in range(0, len(rows), a.batch)]
    with torch.no_grad():
        for key in ("teacher_", ""):
            d = max(float((full_causal_forward(scorer, b[f"{key}input_ids"], b[f"{key}segments"])["rows"] -
                           shared_prefix_forward(scorer, b[f"{key}input_ids"], b[f"{key}segments"])["rows"]).abs().max())
                    for b in batches)
            print(f"{key or 'student_'}rows: max |full - shared| = {d:.2e}")
            assert d < 1e-3
    toks = {k: sum(int((b[f"{k}segments"] != 0).sum()) for b in batches) for k in ("teacher_", "")}
    print(f"{a.model}, {a.dataset}: {len(rows)} examples, {sum(len(r['labels']) for r in rows)} choice rows, "
          f"{toks['teacher_']} teacher / {toks['']} student row tokens; batch {a.batch}; threads {torch.get_num_threads()}")
    for name, key, grad in (("teacher scoring (no grad)", "teacher_", False), ("student scoring (no grad)", "", False),
                            ("teacher forward+backward", "teacher_", True)):
        scorer.train(grad)
        ratios, full_s, shared_s = [], [], []
        for r in range(a.rounds):
            order = (full_causal_forward, shared_prefix_forward) if r % 2 == 0 else (shared_prefix_forward, full_causal_forward)
            t = {fn: run(fn, scorer, batches, key, grad) for fn in order}
            full_s.append(t[full_causal_forward]); shared_s.append(t[shared_prefix_forward])
            ratios.append(t[full_causal_forward] / t[shared_prefix_forward])
        print(f"{name}: full {statistics.median(full_s):.1f} s, shared prefix {statistics.median(shared_s):.1f} s "
              f"(CPU time, median of {a.rounds}); speed-up x{statistics.median(ratios):.2f} "
              f"(per-round: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
