"""Index + query throughput of knife_repro.retrieval (bm25s) vs rank_bm25 on StrategyQA's 9,251 paragraphs.

Prints ratios against rank_bm25 measured in the same process, and top-10 agreement:
  1. defaults: ours (Lucene idf, k1=0.9, b=0.4) vs rank_bm25.BM25Okapi (floored Robertson idf, k1=1.5, b=0.75);
  2. same parameters (k1=1.5, b=0.75), idf still different;
  3. same variant: rank_bm25 with Lucene's idf (a BM25Okapi subclass) and our k1, b.
Usage: .venv/bin/python bench/bm25.py [--queries 500] [--repeats 3]
"""
import argparse
import math
import statistics
import time

import numpy as np
from rank_bm25 import BM25Okapi

from knife_repro.data import load as load_data
from knife_repro.retrieval import BM25Index, load_corpus, tokenize


class LuceneOkapi(BM25Okapi):
    "rank_bm25 with Lucene's idf ln(1 + (N - df + .5)/(df + .5)), no flooring."
    def _calc_idf(self, nd):
        for w, f in nd.items():
            self.idf[w] = math.log(1 + (self.corpus_size - f + 0.5) / (f + 0.5))


def rank_topk(model, qtoks, k=10):
    out = []
    for q in qtoks:
        s = model.get_scores(q)
        out.append([i for i in sorted(np.flatnonzero(s > 0).tolist(), key=lambda i: (-s[i], i))][:k])
    return out


def overlap(a, b, k=10):
    return float(np.mean([len(set(x[:k]) & set(y[:k])) / max(min(k, max(len(x), len(y))), 1) for x, y in zip(a, b)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    texts = [d["text"] for d in load_corpus("strategyqa")]
    qs = [r["question"] for r in load_data("strategyqa")["train"]][:a.queries]
    print(f"corpus: {len(texts)} paragraphs; queries: {len(qs)} StrategyQA train questions")

    def ours(k1, b):
        t0 = time.perf_counter(); ix = BM25Index.build(texts, progress=False, k1=k1, b=b); t1 = time.perf_counter()
        hits = ix.search(qs, k=10, progress=False); t2 = time.perf_counter()
        return t1 - t0, t2 - t1, [[i for i, _ in h] for h in hits]

    def theirs(cls, k1, b):
        t0 = time.perf_counter(); m = cls(tokenize(texts), k1=k1, b=b); t1 = time.perf_counter()
        hits = rank_topk(m, tokenize(qs)); t2 = time.perf_counter()
        return t1 - t0, t2 - t1, hits

    idx_r, q_r, tot_r = [], [], []
    for rep in range(a.repeats):                 # alternate the order: the machine is shared
        if rep % 2 == 0: o = ours(0.9, 0.4); t = theirs(BM25Okapi, 1.5, 0.75)
        else: t = theirs(BM25Okapi, 1.5, 0.75); o = ours(0.9, 0.4)
        idx_r.append(t[0] / o[0]); q_r.append(t[1] / o[1]); tot_r.append((t[0] + t[1]) / (o[0] + o[1]))
        print(f"rep {rep}: index ours {o[0]:.2f}s rank_bm25 {t[0]:.2f}s; query ours {o[1]:.2f}s "
              f"({len(qs) / o[1]:.0f} q/s) rank_bm25 {t[1]:.2f}s ({len(qs) / t[1]:.0f} q/s)")
    print(f"speed-up (rank_bm25 time / ours): index median {statistics.median(idx_r):.1f}x best {max(idx_r):.1f}x; "
          f"query median {statistics.median(q_r):.1f}x best {max(q_r):.1f}x; "
          f"index+query median {statistics.median(tot_r):.1f}x best {max(tot_r):.1f}x")

    base = ours(0.9, 0.4)[2]
    print(f"top-10 overlap, defaults (ours Lucene k1=.9 b=.4 vs BM25Okapi k1=1.5 b=.75): "
          f"{overlap(base, theirs(BM25Okapi, 1.5, 0.75)[2]):.3f}")
    same_kb = ours(1.5, 0.75)[2]
    print(f"top-10 overlap, same k1/b, idf differs (Lucene vs floored Robertson): "
          f"{overlap(same_kb, theirs(BM25Okapi, 1.5, 0.75)[2]):.3f}")
    exact = theirs(LuceneOkapi, 0.9, 0.4)[2]
    print(f"top-10 overlap, same variant (rank_bm25 with Lucene idf, k1=.9 b=.4): {overlap(base, exact):.3f}; "
          f"identical ranked lists: {np.mean([x == y for x, y in zip(base, exact)]):.3f}")


if __name__ == "__main__":
    main()
