"""Tokens/s of batched contrastive decoding vs the one-question-at-a-time reference.

Same teacher (`--teacher`: the offline tiny-gpt2 by default, or a pretrained preset such as
smollm2-135m or gemma3-270m, SCOTT's cpu teacher candidates), same SCOTT StrategyQA prompts
(gold vs wrong answer), same number of new tokens (no stop token, so both produce exactly
`--tokens` per question), the same torch thread count (`--threads`; 0 leaves torch's default).
Both must give the same tokens, question by question (checked before timing). Runs alternate
in order (batched first, then reference first, ...); prints per-repeat ratios, their median
and the best-of ratio. Usage:
    .venv/bin/python bench/contrastive_decoding.py [--teacher smollm2-135m] [--threads 2] [--batch 16] [--tokens 32] [--repeats 3]
"""
import argparse
import statistics
import time

import torch

from knife_repro.data import load
from knife_repro.models import load_causal
from knife_repro.scott import contrastive_decode, contrastive_decode_reference, load_prompt, teacher_prompt, wrong_answer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--teacher", default="tiny-gpt2", help="a causal preset (tiny-gpt2, smollm2-135m, gemma3-270m) or path")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads > 0: torch.set_num_threads(a.threads)
    model, tok = load_causal(a.teacher, seed=0)
    model.eval()
    exs = list(load("strategyqa", llm_rationales=False)["train"])[:a.batch]
    tpl = load_prompt("strategyqa")
    P = [teacher_prompt(tpl, e, e["answer"]) for e in exs]
    N = [teacher_prompt(tpl, e, wrong_answer(e)) for e in exs]

    def batched():
        return contrastive_decode(model, tok, P, N, max_new_tokens=a.tokens, stop_ids=[])

    def reference():
        return [contrastive_decode_reference(model, tok, p, n, max_new_tokens=a.tokens, stop_ids=[]) for p, n in zip(P, N)]

    got, want = batched(), reference()
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, f"batched and reference decoding disagree on questions {bad} (of {len(want)})"
    n_tok = a.batch * a.tokens
    ratios, rates = [], {"batched": [], "reference": []}
    for r in range(a.repeats):
        order = [("batched", batched), ("reference", reference)]
        if r % 2: order.reverse()
        t = {}
        for name, fn in order:
            t0 = time.perf_counter(); fn(); t[name] = time.perf_counter() - t0
            rates[name].append(n_tok / t[name])
        ratios.append(t["reference"] / t["batched"])
        print(f"repeat {r}: batched {n_tok / t['batched']:.0f} tok/s, reference {n_tok / t['reference']:.0f} tok/s, "
              f"ratio {ratios[-1]:.2f}x")
    print(f"teacher {a.teacher}, batch {a.batch}, {a.tokens} new tokens, torch threads {torch.get_num_threads()}: "
          f"median ratio {statistics.median(ratios):.2f}x, best {max(ratios):.2f}x; "
          f"median tok/s batched {statistics.median(rates['batched']):.0f}, reference {statistics.median(rates['reference']):.0f}")


if __name__ == "__main__":
    main()
