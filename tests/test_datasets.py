"The dataset loaders on the shared data: split counts from PROVENANCE.md, schema, determinism, rationale joins."
import collections
import json
import re
import warnings
from pathlib import Path

import pytest

from knife_repro.core import PROJECT_ROOT, DataNotFoundError, data_root
from knife_repro.data import check_qa, file_sha256, load
from knife_repro.data import creak, medqa, openbookqa, strategyqa


def need(*names: str) -> None:
    "Skip the test when a dataset folder is not found in any data root."
    for n in names:
        try: data_root(n)
        except DataNotFoundError as e: pytest.skip(f"{n} data not found: {str(e).splitlines()[0]}")

def sizes(dd) -> dict:
    return {s: len(x) for s, x in dd.items()}

@pytest.fixture(scope="module")
def sqa():
    need("strategyqa", "rationales")
    return load("strategyqa")


# ---------- StrategyQA ----------
def test_strategyqa_counts_and_carve(sqa):
    assert sizes(sqa) == {"train": 1855, "validation": 206, "test": 229}
    raw_train = json.loads((data_root("strategyqa") / "strategyqa" / "train.json").read_text())
    assert len(raw_train) == 2061
    ids = list(sqa["train"]["id"]) + list(sqa["validation"]["id"])
    assert len(set(ids)) == 2061 and set(ids) == {r["qid"] for r in raw_train}     # train + validation = train.json
    assert not set(ids) & set(sqa["test"]["id"])                                       # test = dev.json, disjoint
    check_qa(sqa)

def test_strategyqa_deterministic(sqa):
    again = load("strategyqa")
    for s in sqa:
        assert again[s]["id"] == sqa[s]["id"] and again[s]["llm_rationales"] == sqa[s]["llm_rationales"]
    other = strategyqa.load("validation", seed=1, llm_rationales=False)
    assert other["validation"]["id"] != sqa["validation"]["id"]                       # the seed moves the carve

def test_strategyqa_fields(sqa):
    n_true = sum(a == 0 for s in sqa for a in sqa[s]["answer"])
    assert n_true == 1071                                                              # PROVENANCE: 1071 true / 1219 false
    for r in sqa["test"]:
        assert r["choices"] == ["yes", "no"] and r["rationale"] == " ".join(r["facts"]) and r["decomposition"]
        assert len(r["llm_answers"]) == len(r["llm_rationales"])

def test_strategyqa_gpt3_join(sqa):
    joined = {s: sum(1 for l in sqa[s]["llm_rationales"] if l) for s in sqa}
    print("StrategyQA rows with GPT-3 rationales:", joined)
    # 2,106 rows have a question in MaRio's GPT-3 files; 13 of them only have empty samples
    assert sum(joined.values()) == 2093
    assert all(t.strip() for s in sqa for l in sqa[s]["llm_rationales"] for t in l)
    assert sum(len(l) for s in sqa for l in sqa[s]["llm_rationales"]) == 8521

def test_strategyqa_official_and_mario():
    need("strategyqa", "rationales")
    off = strategyqa.load(variant="official", llm_rationales=False)
    assert sizes(off) == {"train": 2290, "test": 490} and set(off["test"]["answer"]) == {-1}
    check_qa(off)
    mario = strategyqa.load(variant="mario")
    assert sizes(mario) == {"train": 1648, "validation": 184, "test": 458}
    assert all(mario["train"]["llm_rationales"][i] for i in range(50))    # MaRio train questions all have GPT-3 samples
    assert not any(mario["validation"]["llm_rationales"])                   # none released for MaRio dev

def test_strategyqa_paragraphs(sqa):
    paras = strategyqa.paragraphs()
    assert len(paras) == 9251 and len({p["id"] for p in paras}) == 9251
    assert set(paras[0]) >= {"id", "title", "content"}
    cited = {p for s in sqa for ids in sqa[s]["evidence_ids"] for p in ids}
    assert cited == {p["id"] for p in paras}                                 # exactly the cited paragraphs


# ---------- OpenBookQA ----------
@pytest.fixture(scope="module")
def obqa():
    need("openbookqa", "rationales")
    return load("openbookqa")

def test_openbookqa_counts_schema(obqa):
    assert sizes(obqa) == {"train": 4957, "validation": 500, "test": 500}
    check_qa(obqa)
    assert all(len(c) == 4 for s in obqa for c in obqa[s]["choices"])
    assert collections.Counter("ABCD"[a] for a in obqa["test"]["answer"]) == {"A": 138, "C": 132, "B": 126, "D": 104}

def test_openbookqa_rationales(obqa):
    book = openbookqa.open_book()
    assert len(book) == 1326 and not any(f.startswith('"') for f in book)
    assert all(obqa[s]["rationale"] == obqa[s]["fact1"] for s in obqa)
    assert {f for s in obqa for f in obqa[s]["fact1"]} <= set(book)
    joined = {s: sum(1 for l in obqa[s]["llm_rationales"] if l) for s in obqa}
    print("OpenBookQA rows with GPT-3 rationales:", joined)
    assert joined == {"train": 0, "validation": 0, "test": 498}

def test_openbookqa_deterministic(obqa):
    again = openbookqa.load("test")
    assert again["test"]["id"] == obqa["test"]["id"] and again["test"]["answer"] == obqa["test"]["answer"]


# ---------- MedQA ----------
def test_medqa_test_only(shipped_data):   # the data as shipped, even where a user has added train/dev
    need("medqa")
    with pytest.warns(UserWarning, match=r"\['train', 'validation'\] are missing"):
        dd = load("medqa")
    assert sizes(dd) == {"test": 1273} and medqa.missing_splits() == ["train", "validation"]
    check_qa(dd)
    assert collections.Counter("ABCD"[a] for a in dd["test"]["answer"]) == {"A": 353, "B": 309, "C": 346, "D": 265}
    assert not medqa.is_smoke_from_test(dd)
    with pytest.raises(Exception, match="real MedQA train split"):
        medqa.require_real_train(dd, "paper")
    with pytest.raises(Exception, match="train file is missing"):
        medqa.require_real_train(None, "paper")

def test_medqa_smoke_splits():
    need("medqa")
    a = medqa.load(smoke_from_test=True)
    b = medqa.load(smoke_from_test=True)
    assert sizes(a) == {"train": 256, "validation": 128, "test": 128}
    check_qa(a)
    ids = {s: set(x["id"]) for s, x in a.items()}
    assert not (ids["train"] & ids["validation"] or ids["train"] & ids["test"] or ids["validation"] & ids["test"])
    assert all(a[s]["id"] == b[s]["id"] for s in a)                                  # deterministic
    assert medqa.is_smoke_from_test(a) and all(all(a[s]["smoke_from_test"]) for s in a)
    assert medqa.SMOKE_NOTE in a["train"].info.description
    assert sizes(medqa.load(smoke_from_test=True, n_train=1000, n_eval=136)) == {"train": 1000, "validation": 136, "test": 136}
    with pytest.raises(Exception, match="smoke splits carved"):
        medqa.require_real_train(a, "paper")
    medqa.require_real_train(a, "smoke")


# ---------- CREAK ----------
def test_creak_counts_schema():
    need("creak")
    dd = load("creak")
    assert sizes(dd) == {"train": 10176, "validation": 1371, "test": 1371, "contrast": 500}
    check_qa(dd)
    assert collections.Counter(dd["train"]["answer"]) == {0: 5088, 1: 5088}
    assert set(dd["test"]["answer"]) == {-1} and all(c == ["true", "false"] for c in dd["validation"]["choices"][:20])
    assert all(dd["train"]["rationale"]) and not any(dd["contrast"]["rationale"])     # contrast explanations are "n/a"
    assert creak.load("validation")["validation"]["id"] == dd["validation"]["id"]


# ---------- download tables agree with PROVENANCE.md, the files and data/MANIFEST.md ----------
def _tables():
    yield "strategyqa", strategyqa.FILES
    yield "strategyqa", {f"official_release/{m}": (None, h) for m, h in strategyqa.OFFICIAL_FILES.items()}
    yield "rationales", strategyqa.RATIONALE_FILES
    yield "openbookqa", openbookqa.FILES
    yield "rationales", {openbookqa.GPT3_FILE[0]: openbookqa.GPT3_FILE[1:]}
    yield "medqa", medqa.FILES
    yield "creak", creak.FILES

@pytest.mark.parametrize("name,files", list(_tables()), ids=lambda x: x if isinstance(x, str) else "")
def test_sha256_tables(name, files):
    manifest = (PROJECT_ROOT / "data" / "MANIFEST.md").read_text()
    need(name)
    prov = (data_root(name) / name / "PROVENANCE.md").read_text()
    recorded = {p: h for h, p in re.findall(r"^([0-9a-f]{64})  (\S+)$", prov, re.M)}
    for rel, (url, sha) in files.items():
        assert recorded[rel] == sha, rel
        assert file_sha256(data_root(name) / name / rel) == sha, rel
        assert sha in manifest, rel
        assert url is None or url.startswith("https://raw.githubusercontent.com/"), url
