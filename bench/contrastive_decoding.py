"""Tokens/s of batched contrastive decoding vs the one-question-at-a-time reference.

Same teacher (`--teacher`: the offline tiny-gpt2 by default, or a pretrained preset such as
smollm2-135m or gemma3-270m, SCOTT's cpu teacher candidates), same SCOTT StrategyQA prompts
(gold vs wrong answer), same number of new tokens (no stop token, so both produce exactly
`--tokens` per question), the same torch thread count (`--threads`; 0 leaves torch's default).
Both must give the same tokens, question by question (checked before timing). "batched" is
the kit's default (the few-shot prefix all prompts share encoded once, `share_prefix=True`);
"whole rows" the same batch with every row encoded whole, to show what each part buys. Runs
rotate in order; prints per-repeat ratios to the reference, their median and the best-of
ratio. Usage:
    .venv/bin/python bench/contrastive_decoding.py [--teacher smollm2-135m] [--threads 2] [--batch 16] [--tokens 32] [--repeats 3]

`--real-stops`: SCOTT's own stop rule instead (the blank-line separator, `--tokens` the length limit, e.g. 128), so the
questions stop at different steps, as in a teacher run; then "batched" (finished questions leave the batch, the default
`prune_finished=True`) is timed against "rows kept" (`prune_finished=False`: finished rows decoded on to the batch's
last step) and the reference; tokens/s count the tokens each question keeps."""
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
    ap.add_argument("--real-stops", action="store_true", help="SCOTT's stop rule; compares pruning finished questions")
    a = ap.parse_args()
    if a.threads > 0: torch.set_num_threads(a.threads)
    model, tok = load_causal(a.teacher, seed=0)
    model.eval()
    exs = list(load("strategyqa", llm_rationales=False)["train"])[:a.batch]
    tpl = load_prompt("strategyqa")
    P = [teacher_prompt(tpl, e, e["answer"]) for e in exs]
    N = [teacher_prompt(tpl, e, wrong_answer(e)) for e in exs]

    stops = None if a.real_stops else []   # None: SCOTT's separator rule; []: no stop, every question runs --tokens
    other, other_kw = ("rows kept", dict(prune_finished=False)) if a.real_stops else ("whole rows", dict(share_prefix=False))

    def batched():
        return contrastive_decode(model, tok, P, N, max_new_tokens=a.tokens, stop_ids=stops)

    def variant():
        return contrastive_decode(model, tok, P, N, max_new_tokens=a.tokens, stop_ids=stops, **other_kw)

    def reference():
        return [contrastive_decode_reference(model, tok, p, n, max_new_tokens=a.tokens, stop_ids=stops) for p, n in zip(P, N)]

    want = reference()
    for name, fn in (("batched", batched), (other, variant)):
        bad = [i for i, (g, w) in enumerate(zip(fn(), want)) if g != w]
        assert not bad, f"{name} and reference decoding disagree on questions {bad} (of {len(want)})"
    n_tok = sum(map(len, want))
    if a.real_stops:
        print(f"kept tokens per question: {sorted(map(len, want))} (limit {a.tokens})")
    fns = [("batched", batched), (other, variant), ("reference", reference)]
    ratios = {"batched": [], other: []}
    rates = {name: [] for name, _ in fns}
    for r in range(a.repeats):
        order = fns[r % 3:] + fns[:r % 3]
        t = {}
        for name, fn in order:
            t0 = time.perf_counter(); fn(); t[name] = time.perf_counter() - t0
            rates[name].append(n_tok / t[name])
        for name in ratios: ratios[name].append(t["reference"] / t[name])
        print(f"repeat {r}: " + ", ".join(f"{name} {n_tok / t[name]:.0f} tok/s" for name, _ in fns)
              + f"; ratio batched {ratios['batched'][-1]:.2f}x, {other} {ratios[other][-1]:.2f}x")
    print(f"teacher {a.teacher}, batch {a.batch}, {'at most ' if a.real_stops else ''}{a.tokens} new tokens, "
          f"torch threads {torch.get_num_threads()}: "
          f"median ratio batched {statistics.median(ratios['batched']):.2f}x (best {max(ratios['batched']):.2f}x), "
          f"{other} {statistics.median(ratios[other]):.2f}x; median tok/s "
          + ", ".join(f"{name} {statistics.median(v):.0f}" for name, v in rates.items()))


if __name__ == "__main__":
    main()
