"Shared fixtures: offline hub, a toy seq2seq task on the tiny T5 preset."
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


def toy_task(seed: int = 0, n_train: int = 96, n_eval: int = 32):
    "({'model': tiny-t5}, tokenizer, train examples, eval examples) on the toy comparison task."
    from knife_repro.core import seed_everything
    from knife_repro.data import load as load_data
    from knife_repro.models import load_seq2seq
    seed_everything(seed)
    model, tok = load_seq2seq("tiny-t5", seed=seed)
    dd = load_data("toy", n_train=n_train, n_eval=n_eval)
    enc = lambda split: [{"input_ids": tok(r["question"]).input_ids,
                          "attention_mask": [1] * len(tok(r["question"]).input_ids),
                          "labels": tok(r["choices"][r["answer"]]).input_ids} for r in dd[split]]
    return {"model": model}, tok, enc("train"), enc("validation")


def lm_loss(models, batch):
    out = models["model"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss, {}


@pytest.fixture
def toy():
    return toy_task


@pytest.fixture(scope="session")
def smollm2():
    "(model, tokenizer) of the pretrained smollm2-135m preset, loaded once per session (a fresh copy per test is"
    " cheap: reloading the cache takes < 1 s, but tests that train must copy it)."
    from knife_repro.models import load_causal
    return load_causal("smollm2-135m")


# ---------- data roots as shipped and as completed by a user ----------
# The shared data lack MedQA's train and dev files and three SPIDER databases. Tests and notebooks
# must hold either way, so these fixtures build both states from the real data root (symlinks) and
# point KNIFE_REPRO_DATA at them: `shipped_data` without those files (even where a user has added
# them), `completed_data` with small fakes of the right format in their place.
MEDQA_ADDED = ("train", "validation")
SPIDER_ADDED = ("baseball_1", "soccer_1", "wta_1")
# hand-written fake MedQA records: (question, answer key); options are the same four texts
FAKE_MEDQA = {"train": [("Fake train question %d?" % i, "ABCD"[i % 4]) for i in range(6)],
              "validation": [("Fake dev question %d?" % i, "DCBA"[i % 4]) for i in range(3)]}
FAKE_OPTIONS = {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}


def _real_data_root():
    from knife_repro.core import DataNotFoundError, data_root
    try:
        data_root("medqa"); data_root("spider")
        return data_root("medqa"), data_root("spider")
    except DataNotFoundError as e:
        pytest.skip(f"MedQA/SPIDER data not found: {str(e).splitlines()[0]}")


def _build_root(root, completed: bool):
    import json
    import sqlite3
    from pathlib import Path
    from knife_repro.data import medqa
    medqa_root, spider_root = _real_data_root()
    root = Path(root); root.mkdir()
    for p in {*medqa_root.iterdir(), *spider_root.iterdir()}:
        if p.name not in ("medqa", "spider") and not (root / p.name).exists(): (root / p.name).symlink_to(p)
    md = root / "medqa"
    (md / "US" / "4_options").mkdir(parents=True)
    (md / "PROVENANCE.md").symlink_to(medqa_root / "medqa" / "PROVENANCE.md")
    test_file = medqa.SPLIT_FILES["test"]
    (md / test_file).symlink_to(medqa_root / "medqa" / test_file)
    sp = root / "spider"; (sp / "database").mkdir(parents=True)
    for p in (spider_root / "spider").iterdir():
        if p.name != "database": (sp / p.name).symlink_to(p)
    for p in (spider_root / "spider" / "database").iterdir():
        if p.name not in SPIDER_ADDED: (sp / "database" / p.name).symlink_to(p)
    if completed:
        for split, recs in FAKE_MEDQA.items():
            (md / medqa.SPLIT_FILES[split]).write_text("".join(
                json.dumps({"question": q, "options": FAKE_OPTIONS, "answer_idx": k, "answer": FAKE_OPTIONS[k],
                            "meta_info": "step1"}) + "\n" for q, k in recs))
        tables = {t["db_id"]: t for t in json.loads((sp / "tables.json").read_text())}
        for db in SPIDER_ADDED:                       # a SQLite file with the schema of tables.json, one row per table
            t = tables[db]; (sp / "database" / db).mkdir()
            con = sqlite3.connect(sp / "database" / db / f"{db}.sqlite")
            for ti, name in enumerate(t["table_names_original"]):
                if name.startswith("sqlite_"): continue   # SQLite's own (AUTOINCREMENT) table, listed in tables.json
                cols = [(c, ty) for (i, c), ty in zip(t["column_names_original"], t["column_types"]) if i == ti]
                con.execute(f'CREATE TABLE "{name}" ({", ".join(f"{chr(34)}{c}{chr(34)} {ty}" for c, ty in cols)})')
                con.execute(f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(cols))})',
                            [1 if ty in ("number", "boolean") else "x" for _, ty in cols])
            con.commit(); con.close()
    return root


@pytest.fixture
def shipped_data(tmp_path, monkeypatch):
    "A data root as shipped (no MedQA train/dev, no baseball_1/soccer_1/wta_1), set as KNIFE_REPRO_DATA."
    root = _build_root(tmp_path / "shipped", completed=False)
    monkeypatch.setenv("KNIFE_REPRO_DATA", str(root))
    return root


@pytest.fixture
def completed_data(tmp_path, monkeypatch):
    "A data root with fake MedQA train/dev files and fake SQLite files for the missing SPIDER DBs, as KNIFE_REPRO_DATA."
    root = _build_root(tmp_path / "completed", completed=True)
    monkeypatch.setenv("KNIFE_REPRO_DATA", str(root))
    return root
