"""MedQA's train/dev files and SPIDER's three missing databases: loaders and notebooks hold with them absent
(a warning, the documented fallback) and present (the real splits, no warning). See the fixtures in conftest.py."""
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import FAKE_MEDQA, SPIDER_ADDED
from knife_repro.data import load
from knife_repro.data import medqa

NBS = Path(__file__).resolve().parents[1] / "nbs"


def _load_recording(*a, **k):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        dd = load(*a, **k)
    return dd, [str(x.message) for x in w if issubclass(x.category, UserWarning)]


def test_medqa_absent_warns_and_keeps_test_only(shipped_data):
    dd, w = _load_recording("medqa")
    assert {s: len(x) for s, x in dd.items()} == {"test": 1273}
    assert len(w) == 1 and "['train', 'validation'] are missing" in w[0]
    from knife_repro.kard import _load
    from knife_repro.core import RunConfig
    smoke, notes = _load(RunConfig(method="kard_ft", dataset="medqa", scale="smoke"))
    assert medqa.is_smoke_from_test(smoke) and "CARVED FROM THE OFFICIAL TEST FILE" in notes[0]


def test_medqa_present_uses_real_splits(completed_data):
    dd, w = _load_recording("medqa")
    assert w == [] and medqa.missing_splits() == []
    assert {s: len(x) for s, x in dd.items()} == {"train": 6, "validation": 3, "test": 1273}
    for split, recs in FAKE_MEDQA.items():
        assert dd[split]["question"] == [q for q, _ in recs]
        assert dd[split]["answer"] == ["ABCD".index(k) for _, k in recs]    # the key's index in A-D
        assert dd[split]["choices"][0] == ["alpha", "beta", "gamma", "delta"]
    assert not medqa.is_smoke_from_test(dd)
    medqa.require_real_train(dd, "paper"); medqa.require_real_train(None, "paper")   # no refusal
    from knife_repro.kard import _load
    from knife_repro.core import RunConfig
    real, notes = _load(RunConfig(method="kard_ft", dataset="medqa", scale="smoke"))
    assert not medqa.is_smoke_from_test(real) and len(real["train"]) == 6 and notes == []


def test_spider_absent_flags_and_warns(shipped_data):
    from knife_repro.data import spider
    assert spider.missing_dbs() == sorted(SPIDER_ADDED) and spider.db_path("wta_1") is None
    dd = spider.load()
    assert sum(not a for a in dd["validation"]["db_available"]) == 62                     # wta_1's dev questions
    assert sum(not a for a in dd["train"]["db_available"]) == 96                          # baseball_1 and soccer_1
    kept, w = _load_recording("spider", split="validation", require_db=True)
    assert len(kept["validation"]) == 1034 - 62
    assert len(w) == 1 and "skipped 62 questions" in w[0] and "wta_1" in w[0]


def test_spider_present_uses_every_database(completed_data):
    from knife_repro.data import spider
    assert spider.missing_dbs() == [] and spider.db_path("wta_1") == completed_data / "spider/database/wta_1/wta_1.sqlite"
    dd = spider.load()
    assert all(dd["validation"]["db_available"]) and all(dd["train"]["db_available"])
    kept, w = _load_recording("spider", split="validation", require_db=True)
    assert len(kept["validation"]) == 1034 and w == []
    rows = [r for r in dd["validation"] if r["db_id"] == "wta_1"][:3]
    from knife_repro.data import spider_eval
    res = spider_eval.evaluate([r["query"] for r in rows], rows)
    assert res["skipped_missing_db"] == 0 and res["n_executed"] == 3 and not res["gold_errors"]


@pytest.mark.slow
@pytest.mark.parametrize("nb", ["12_medqa", "13_spider", "13a_spider_eval"])
def test_notebooks_hold_with_the_data_completed(completed_data, nb):
    "The notebooks' assert cells hold when a user has added the files the shared data lack."
    from knife_repro.core import data_root
    assert data_root("medqa") == data_root("spider") == completed_data.resolve()   # what the notebook will see
    out = subprocess.run([str(Path(sys.executable).parent / "nbdev_test"), "--path", str(NBS / f"{nb}.ipynb")],
                         capture_output=True, text=True, timeout=600, cwd=NBS.parent)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
