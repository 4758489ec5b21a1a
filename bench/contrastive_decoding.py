"""Tokens/s of batched contrastive decoding vs the one-question-at-a-time reference.

Same tiny model (offline tiny-gpt2), same SCOTT StrategyQA prompts (gold vs wrong answer),
same number of new tokens (no stop token, so both produce exactly `--tokens` per question).
Runs alternate in order (batched first, then reference first, ...); prints per-repeat
ratios, their median and the best-of ratio. Usage:
    .venv/bin/python bench/contrastive_decoding.py [--batch 16] [--tokens 32] [--repeats 3]
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
    a = ap.parse_args()
    model, tok = load_causal("tiny-gpt2", seed=0)
    model.eval()
    exs = list(load("strategyqa", llm_rationales=False)["train"])[:a.batch]
    tpl = load_prompt("strategyqa")
    P = [teacher_prompt(tpl, e, e["answer"]) for e in exs]
    N = [teacher_prompt(tpl, e, wrong_answer(e)) for e in exs]

    def batched():
        return contrastive_decode(model, tok, P, N, max_new_tokens=a.tokens, stop_ids=[])

    def reference():
        return [contrastive_decode_reference(model, tok, p, n, max_new_tokens=a.tokens, stop_ids=[]) for p, n in zip(P, N)]

    assert batched() == reference(), "batched and reference decoding disagree"
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
    print(f"batch {a.batch}, {a.tokens} new tokens, torch threads {torch.get_num_threads()}: "
          f"median ratio {statistics.median(ratios):.2f}x, best {max(ratios):.2f}x; "
          f"median tok/s batched {statistics.median(rates['batched']):.0f}, reference {statistics.median(rates['reference']):.0f}")


if __name__ == "__main__":
    main()
