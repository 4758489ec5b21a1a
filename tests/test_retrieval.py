"BM25 equals a straightforward implementation of the documented variant (idf, k1, b, tie order)."
import json
import math
import random
from collections import Counter

import numpy as np
import pytest

from knife_repro.retrieval import BM25Index, corpus_index, load_corpus, tokenize


def reference_scores(docs, query, k1, b):
    "Lucene BM25 written out: idf = ln(1 + (N - df + .5)/(df + .5)), tf/(tf + k1(1 - b + b dl/avgdl))."
    toks = tokenize(docs)
    N, avg = len(toks), sum(map(len, toks)) / len(toks)
    df = Counter(t for d in toks for t in set(d))
    out = []
    for d in toks:
        tf, s = Counter(d), 0.0
        for t in tokenize([query])[0]:
            if df[t] == 0: continue
            idf = math.log(1 + (N - df[t] + 0.5) / (df[t] + 0.5))
            s += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(d) / avg))
        out.append(s)
    return out


def reference_topk(scores, k):
    return [i for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)) if scores[i] > 0][:k]


WORDS = "apple banana cherry river mountain sky blue green red stone wolf moon".split()


def corpus(seed=0, n=40):
    rnd = random.Random(seed)
    docs = [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 12))) for _ in range(n)]
    return docs + docs[:5]          # exact duplicates: ties that only the tie rule orders


@pytest.mark.parametrize("k1,b", [(0.9, 0.4), (1.5, 0.75), (1.2, 0.0)])
def test_scores_and_topk_equal_reference(k1, b):
    docs = corpus()
    ix = BM25Index.build(docs, k1=k1, b=b, progress=False)
    rnd = random.Random(1)
    queries = [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 4))) for _ in range(30)] + ["apple apple moon"]
    got = ix.search(queries, k=7, batch_size=8, progress=False)
    for q, hits in zip(queries, got):
        ref = reference_scores(docs, q, k1, b)
        assert np.allclose(ix.scores(q), ref, rtol=1e-5, atol=1e-6)
        assert [i for i, _ in hits] == reference_topk(ref, 7), q
        assert np.allclose([s for _, s in hits], [ref[i] for i, _ in hits], rtol=1e-5)


def test_ties_in_corpus_order_and_zero_scores_excluded():
    ix = BM25Index.build(["wolf moon", "sky", "wolf moon", "wolf moon", "river"], progress=False)
    assert [i for i, _ in ix.search(["moon"], k=3, progress=False)[0]] == [0, 2, 3]
    assert [i for i, _ in ix.search(["moon"], k=10, progress=False)[0]] == [0, 2, 3]
    assert ix.search(["unseen words"], k=3, progress=False) == [[]]
    assert np.allclose(ix.score_docs("moon", [4, 0]), ix.scores("moon")[[4, 0]])


def test_index_persists(tmp_path):
    docs = corpus(3)
    ix = BM25Index.build(docs, ids=[f"d{i}" for i in range(len(docs))], progress=False)
    ix.save(tmp_path / "ix")
    ix2 = BM25Index.load(tmp_path / "ix")
    assert ix2.ids == ix.ids and ix2.texts == docs and ix2.params == ix.params
    for q in ["apple sky", "wolf red stone"]:
        assert ix2.search([q], 5, progress=False) == ix.search([q], 5, progress=False)


def test_user_jsonl_corpus_and_errors(tmp_path):
    p = tmp_path / "kb.jsonl"
    p.write_text(json.dumps({"id": "a", "text": "aspirin inhibits cyclooxygenase"}) + "\n"
                 + json.dumps({"_id": "b", "title": "Heart", "contents": "the heart pumps blood"}) + "\n")
    assert load_corpus(p) == [{"id": "a", "text": "aspirin inhibits cyclooxygenase"},
                              {"id": "b", "text": "Heart. the heart pumps blood"}]
    ix = corpus_index(p, tmp_path / "cache", progress=False)
    assert ix.search(["heart blood"], 1, progress=False)[0][0][0] == 1
    assert (tmp_path / "cache").is_dir() and corpus_index(p, tmp_path / "cache").ids == ["a", "b"]
    bad = tmp_path / "bad.jsonl"; bad.write_text('{"id": 1}\n')
    with pytest.raises(ValueError, match="line 1.*'text'"):
        load_corpus(bad)
    with pytest.raises(FileNotFoundError, match="corpus='nope'"):
        load_corpus("nope")
    with pytest.raises(ValueError, match="b=2"):
        BM25Index(b=2)


def test_real_knowledge_bases_sizes():
    assert len(load_corpus("strategyqa")) == 9251
    assert len(load_corpus("openbookqa")) == 1326


def test_openbookqa_crowd_knowledge_base_is_the_book_then_the_crowd_facts():
    "The book's 1,326 facts keep their ids; the 5,166 non-blank crowd-sourced lines follow, read verbatim from the file."
    from knife_repro.data.openbookqa import dataset_dir
    kb, book = load_corpus("openbookqa+crowd"), load_corpus("openbookqa")
    lines = (dataset_dir("openbookqa") / "Additional" / "crowdsourced-facts.txt").read_text().splitlines()
    assert kb[:1326] == book and len(kb) == 1326 + sum(bool(l.strip()) for l in lines) == 1326 + 5166
    assert [p["text"] for p in kb[1326:]] == [l.strip() for l in lines if l.strip()]
    assert len({p["id"] for p in kb}) == len(kb) and kb[1326]["id"] == "crowd-0"
    assert "A woodland is another name for a forest" in {p["text"] for p in kb[1326:]}


def _bm25s_own(toks, **params):
    import bm25s
    own = bm25s.BM25(**params); own.index(toks, show_progress=False)
    return own


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25+"])
def test_vectorised_build_stores_bm25s_scores_bit_for_bit(method):
    docs = corpus(5, n=60)
    ix = BM25Index.build(docs, k1=1.2, b=0.6, method=method, progress=False)
    own = _bm25s_own(tokenize(docs), k1=1.2, b=0.6, method=method)
    assert set(ix._bm25.vocab_dict) == set(own.vocab_dict)
    for w in WORDS + ["apple moon", "red red sky"]:
        q = [t for t in tokenize([w])[0] if t in own.vocab_dict]
        assert np.array_equal(ix._bm25.get_scores(q), own.get_scores(q)), (method, w)


def test_vectorised_build_keeps_the_ranked_lists_on_strategyqa():
    "The 9,251 paragraphs, 300 StrategyQA questions: the same top-10 (indices and scores) as bm25s's own build."
    from knife_repro.data import load as load_data
    texts = [d["text"] for d in load_corpus("strategyqa")]
    ix = BM25Index.build(texts, progress=False)
    ref = BM25Index(); ref.texts, ref.ids = texts, [str(i) for i in range(len(texts))]
    ref._bm25 = _bm25s_own(tokenize(texts), k1=0.9, b=0.4, method="lucene")
    qs = [r["question"] for r in load_data("strategyqa")["train"]][:300]
    assert ix.search(qs, k=10, progress=False) == ref.search(qs, k=10, progress=False)


def test_evidence_recall_by_hand():
    from knife_repro.retrieval import evidence_recall
    hits = [["a", "b", "c"], ["x"], ["d"], ["q"]]
    gold = [["a", "z"], ["y", "w"], [], ["q"]]          # by hand: 1/2, 0/2, (no gold: left out), 1/1
    assert evidence_recall(hits, gold) == {"recall": (0.5 + 0 + 1) / 3, "any": 2 / 3, "n": 3}
    assert evidence_recall([["a"]], [[]]) == {"recall": None, "any": None, "n": 0}
    with pytest.raises(ValueError):
        evidence_recall([["a"]], [["a"], ["b"]])
