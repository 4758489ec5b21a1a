"Bad input to the dataset loaders raises DataError naming the file, the line (or record index) and the field."
import json
import warnings
from pathlib import Path

import pytest

from knife_repro.data import DataError, fetch, file_sha256, load
from knife_repro.data import creak, medqa, openbookqa, strategyqa

# the loaders warn when optional files (GPT-3 rationales, MedQA train/dev) are absent, as in these tmp folders
pytestmark = pytest.mark.filterwarnings("ignore:.*(GPT-3 rationale|are missing under).*:UserWarning")


# ---------- small valid files ----------
def sqa_rec(i=0, **kw):
    r = {"qid": f"q{i}", "term": "t", "description": "d", "question": f"Is {i} a number?", "answer": True,
         "facts": ["It is."], "decomposition": ["Is it?"], "evidence": [[[["Number-1"]]]]}
    r.update(kw)
    return r

def write_sqa(root: Path, train=None, dev=None) -> Path:
    d = root / "strategyqa"; d.mkdir(parents=True, exist_ok=True)
    (d / "train.json").write_text(json.dumps(train if train is not None else [sqa_rec(i) for i in range(10)]))
    (d / "dev.json").write_text(json.dumps(dev if dev is not None else [sqa_rec(100)]))
    return d

def obqa_rec(qid="1", key="A", **kw):
    r = {"id": qid, "question": {"stem": "The sun is", "choices": [{"text": t, "label": l} for t, l in
                                                                  zip(["hot", "cold", "wet", "blue"], "ABCD")]},
         "answerKey": key}
    r.update(kw)
    return r

def write_obqa(root: Path, main=None, extra=None, stem="dev") -> Path:
    d = root / "openbookqa"
    for sub in ("Main", "Additional"): (d / sub).mkdir(parents=True, exist_ok=True)
    main = main if main is not None else [json.dumps(obqa_rec())]
    extra = extra if extra is not None else [json.dumps({**obqa_rec(), "fact1": "the sun is hot", "humanScore": "1.00", "clarity": "2.00"})]
    (d / "Main" / f"{stem}.jsonl").write_text("\n".join(main) + "\n")
    (d / "Additional" / f"{stem}_complete.jsonl").write_text("\n".join(extra) + "\n")
    return d

def med_rec(**kw):
    r = {"question": "What?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "B", "answer": "b",
         "meta_info": "step1"}
    r.update(kw)
    return r

def write_medqa(root: Path, lines) -> Path:
    p = root / "medqa" / "US" / "4_options" / "phrases_no_exclude_test.jsonl"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return p

def creak_rec(i=0, **kw):
    r = {"ex_id": f"train_{i}", "sentence": "Pink Floyd is a band.", "explanation": "It is.", "label": "true", "entity": "Pink Floyd"}
    r.update(kw)
    return r

def write_creak(root: Path, train_lines) -> Path:
    d = root / "creak"; d.mkdir(parents=True, exist_ok=True)
    (d / "train.json").write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in train_lines) + "\n")
    return d / "train.json"

def raises(fn, *must_contain) -> DataError:
    with pytest.raises(DataError) as e:
        fn()
    msg = str(e.value)
    for s in must_contain:
        assert s in msg, f"{s!r} not in {msg!r}"
    return e.value


# ---------- StrategyQA (JSON lists: the record index is named) ----------
def test_strategyqa_malformed_json(tmp_path):
    d = write_sqa(tmp_path)
    (d / "train.json").write_text('[{"qid": "q0",\n "question": }]')
    e = raises(lambda: strategyqa.load(root=tmp_path), str(d / "train.json"), ":2", "malformed JSON")
    assert e.line == 2

def test_strategyqa_missing_answer(tmp_path):
    recs = [sqa_rec(i) for i in range(5)]; del recs[3]["answer"]
    d = write_sqa(tmp_path, train=recs)
    e = raises(lambda: strategyqa.load(root=tmp_path), str(d / "train.json"), "record 3", "'answer'", "missing")
    assert e.field == "answer"

def test_strategyqa_answer_not_bool(tmp_path):
    d = write_sqa(tmp_path, dev=[sqa_rec(0), sqa_rec(1, answer="maybe")])
    raises(lambda: strategyqa.load(root=tmp_path), str(d / "dev.json"), "record 1", "'answer'", "expected bool")

def test_strategyqa_facts_not_strings(tmp_path):
    d = write_sqa(tmp_path, train=[sqa_rec(0, facts=["ok", 3])] + [sqa_rec(i) for i in range(1, 5)])
    raises(lambda: strategyqa.load(root=tmp_path), str(d / "train.json"), "record 0", "'facts'")

def test_strategyqa_missing_file(tmp_path):
    d = write_sqa(tmp_path); (d / "dev.json").unlink()
    raises(lambda: strategyqa.load(root=tmp_path), str(d / "dev.json"), "file not found")

def test_strategyqa_unknown_split_and_variant(tmp_path):
    d = write_sqa(tmp_path)
    raises(lambda: strategyqa.load("dev", root=tmp_path), "'split'", "unknown split 'dev'", str(d))
    raises(lambda: strategyqa.load(root=tmp_path, variant="kaggle"), "'variant'", "unknown variant", str(d))

def test_strategyqa_official_test_with_answer(tmp_path):
    d = write_sqa(tmp_path); (d / "official_release").mkdir()
    (d / "official_release" / "strategyqa_train.json").write_text(json.dumps([sqa_rec(0)]))
    (d / "official_release" / "strategyqa_test.json").write_text(json.dumps([{"qid": "t0", "question": "Q?", "answer": True}]))
    raises(lambda: strategyqa.load(root=tmp_path, variant="official"), "strategyqa_test.json", "record 0", "'answer'")

def test_strategyqa_paragraphs_not_an_object(tmp_path):
    d = write_sqa(tmp_path); (d / "official_release").mkdir()
    p = d / "official_release" / "strategyqa_train_paragraphs.json"
    p.write_text(json.dumps([{"title": "x", "content": "y"}]))
    raises(lambda: strategyqa.paragraphs(tmp_path), str(p), "expected one JSON object")
    p.write_text(json.dumps({"X-1": {"title": "X"}}))
    raises(lambda: strategyqa.paragraphs(tmp_path), str(p), "record 'X-1'", "'content'")

def test_strategyqa_gpt3_record_missing_field(tmp_path):
    write_sqa(tmp_path)
    g = tmp_path / "rationales" / "mario_INK-USC" / "strategyqa" / "gpt3" / "train_gpt3_responses.jsonl"
    g.parent.mkdir(parents=True)
    g.write_text(json.dumps({"0": {"question": "Is 0 a number?", "predicted_label": "yes"}}))
    raises(lambda: strategyqa.load(root=tmp_path), str(g), "record '0'", "'predicted_rationale'")


# ---------- OpenBookQA (JSON Lines: the line is named) ----------
def test_obqa_malformed_line(tmp_path):
    d = write_obqa(tmp_path, main=[json.dumps(obqa_rec()), '{"id": "2", "question": '])
    e = raises(lambda: openbookqa.load("validation", root=tmp_path), str(d / "Main" / "dev.jsonl") + ":2", "malformed JSON line")
    assert e.line == 2

def test_obqa_answer_key_outside_choices(tmp_path):
    d = write_obqa(tmp_path, main=[json.dumps(obqa_rec()), json.dumps(obqa_rec("2", key="E"))])
    e = raises(lambda: openbookqa.load("validation", root=tmp_path), str(d / "Main" / "dev.jsonl") + ":2", "'answerKey'", "'E'")
    assert e.field == "answerKey" and e.line == 2

def test_obqa_missing_stem(tmp_path):
    rec = obqa_rec(); del rec["question"]["stem"]
    d = write_obqa(tmp_path, main=[json.dumps(rec)])
    raises(lambda: openbookqa.load("validation", root=tmp_path), str(d / "Main" / "dev.jsonl") + ":1", "'stem'", "missing")

def test_obqa_bad_choice(tmp_path):
    rec = obqa_rec(); rec["question"]["choices"][2] = {"text": "wet"}
    d = write_obqa(tmp_path, main=[json.dumps(rec)])
    raises(lambda: openbookqa.load("validation", root=tmp_path), str(d / "Main" / "dev.jsonl") + ":1", "'question.choices'")

def test_obqa_additional_missing_id_and_fact(tmp_path):
    d = write_obqa(tmp_path, main=[json.dumps(obqa_rec()), json.dumps(obqa_rec("2"))])
    raises(lambda: openbookqa.load("validation", root=tmp_path), str(d / "Additional" / "dev_complete.jsonl"), "'id'", "'2'")
    d = write_obqa(tmp_path / "b", extra=[json.dumps(obqa_rec())])
    raises(lambda: openbookqa.load("validation", root=tmp_path / "b"), str(d / "Additional" / "dev_complete.jsonl") + ":1", "'fact1'")

def test_obqa_bad_human_score(tmp_path):
    d = write_obqa(tmp_path, extra=[json.dumps({**obqa_rec(), "fact1": "f", "humanScore": "high"})])
    raises(lambda: openbookqa.load("validation", root=tmp_path), str(d / "Additional" / "dev_complete.jsonl") + ":1", "'humanScore'")

def test_obqa_missing_open_book(tmp_path):
    d = write_obqa(tmp_path)
    raises(lambda: openbookqa.open_book(tmp_path), str(d / "Main" / "openbook.txt"), "file not found")


# ---------- MedQA ----------
def test_medqa_answer_idx_outside_options(tmp_path):
    p = write_medqa(tmp_path, [med_rec(), med_rec(), med_rec(answer_idx="E")])
    e = raises(lambda: medqa.load(root=tmp_path), f"{p}:3", "'answer_idx'", "'E'")
    assert e.line == 3

def test_medqa_answer_text_mismatch(tmp_path):
    p = write_medqa(tmp_path, [med_rec(answer="c")])
    raises(lambda: medqa.load(root=tmp_path), f"{p}:1", "'answer'", "differs")

def test_medqa_malformed_line_and_missing_options(tmp_path):
    p = write_medqa(tmp_path, [med_rec(), "not json"])
    raises(lambda: medqa.load(root=tmp_path), f"{p}:2", "malformed JSON line")
    rec = med_rec(); del rec["options"]
    p = write_medqa(tmp_path / "b", [rec])
    raises(lambda: medqa.load(root=tmp_path / "b"), f"{p}:1", "'options'", "missing")

def test_medqa_no_files_and_unknown_split(tmp_path):
    (tmp_path / "medqa").mkdir()
    raises(lambda: medqa.load(root=tmp_path), str(tmp_path / "medqa"), "'split'", "no MedQA split file")
    write_medqa(tmp_path, [med_rec()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raises(lambda: medqa.load("train", root=tmp_path), "'split'", "unknown split 'train'")

def test_medqa_smoke_too_large_and_paper_needs_train(tmp_path):
    p = write_medqa(tmp_path, [med_rec() for _ in range(10)])
    raises(lambda: medqa.load(root=tmp_path, smoke_from_test=True, n_train=8, n_eval=2), str(p), "'n_train'")
    dd = medqa.load(root=tmp_path, smoke_from_test=True, n_train=4, n_eval=3)
    assert medqa.is_smoke_from_test(dd)
    raises(lambda: medqa.require_real_train(dd, "paper"), "'train'", "smoke splits carved from the test file")
    raises(lambda: medqa.require_real_train(tmp_path, "paper"), "phrases_no_exclude_train.jsonl", "'train'")
    medqa.require_real_train(dd, "smoke")  # no error at smoke scale


# ---------- CREAK ----------
def test_creak_bad_label(tmp_path):
    p = write_creak(tmp_path, [creak_rec(0), creak_rec(1, label="maybe")])
    e = raises(lambda: creak.load("train", root=tmp_path), f"{p}:2", "'label'", "'maybe'")
    assert e.field == "label"

def test_creak_missing_sentence_and_not_an_object(tmp_path):
    rec = creak_rec(); del rec["sentence"]
    p = write_creak(tmp_path, [creak_rec(), "", rec])
    raises(lambda: creak.load("train", root=tmp_path), f"{p}:3", "'sentence'", "missing")
    p = write_creak(tmp_path / "b", ["[1, 2]"])
    raises(lambda: creak.load("train", root=tmp_path / "b"), f"{p}:1", "expected a JSON object")

def test_creak_missing_file(tmp_path):
    write_creak(tmp_path, [creak_rec()])
    raises(lambda: creak.load("contrast", root=tmp_path), str(tmp_path / "creak" / "contrast_set.json"), "file not found")


# ---------- registry and download ----------
def test_unknown_dataset():
    raises(lambda: load("imagenet"), "unknown dataset 'imagenet'", "strategyqa")

def test_fetch_checks_sha256(tmp_path):
    src = tmp_path / "src.json"; src.write_text("[]")
    raises(lambda: fetch(src.as_uri(), tmp_path / "out.json", "0" * 64), str(tmp_path / "out.json"), "'sha256'", "mismatch")
    assert not (tmp_path / "out.json").exists()
    assert fetch(src.as_uri(), tmp_path / "ok.json", file_sha256(src)).read_text() == "[]"
