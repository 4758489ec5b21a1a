"Report: collecting records, seed aggregation, the paper-table join, skipped files, written tables and figures."
import json
import math
import warnings
from pathlib import Path

import pandas as pd
import pytest

from knife_repro.core import RunConfig, atomic_write_json, write_run_record
from knife_repro import report


def _rec(root, method, dataset, seed, metrics, model="tiny-t5", **flags):
    cfg = RunConfig.from_params(method=method, dataset=dataset, model=model, seed=seed, scale="smoke",
                                output_dir=str(root), **flags)
    return write_run_record(cfg, metrics, timings={"train_s": 1.0})


@pytest.fixture
def runs(tmp_path):
    accs = {("ft_io", "strategyqa"): [0.50, 0.60, 0.70], ("knife", "strategyqa"): [0.40, 0.44],
            ("ft_io", "openbookqa"): [0.30]}
    for (m, d), vals in accs.items():
        for s, a in enumerate(vals):
            _rec(tmp_path, m, d, s, {"accuracy": a, "accuracy_ci_low": a - 0.1, "accuracy_ci_high": a + 0.2, "n": 10})
    _rec(tmp_path, "knife", "strategyqa", 0, {"accuracy": 0.9}, alpha=0.5)           # another flag setting
    _rec(tmp_path, "cd_spider", "spider", 0, {"teacher": 0.2}, k=4)
    _rec(tmp_path, "cd_addition", "addition", 0, {"teacher": 0.8, "post_distill": 0.6, "details": {"x": {"y": 3}}})
    _rec(tmp_path, "cd_addition", "addition", 1, {"teacher": 0.9, "post_distill": 0.7})
    return tmp_path / "runs"


def test_collect_is_tidy(runs):
    df = report.collect_runs(runs)
    assert len(df) == 10 and df.run_id.is_unique
    assert {"method", "dataset", "model", "seed", "scale", "train_fraction", "flags", "accuracy"} <= set(df.columns)
    assert df["details.x.y"].dropna().tolist() == [3]                     # nested metrics flattened
    assert df.loc[df["flag.alpha"].notna(), "accuracy"].tolist() == [0.9]


def test_aggregate_mean_std_n_over_seeds(runs):
    df = report.collect_runs(runs)
    agg = report.aggregate(df).set_index(["method", "dataset", "flags"])
    r = agg.loc[("ft_io", "strategyqa", "{}")]
    assert r.n == 3 and r.seeds == "0,1,2"
    assert math.isclose(r["mean"], 0.6) and math.isclose(r["std"], 0.1)     # sample std (ddof=1)
    assert math.isclose(r.ci_low, 0.5) and math.isclose(r.ci_high, 0.8)     # mean of the runs' CI bounds
    one = agg.loc[("ft_io", "openbookqa", "{}")]
    assert one.n == 1 and one["std"] == 0
    k = agg.loc[("knife", "strategyqa", "{}")]
    assert k.n == 2 and math.isclose(k["mean"], 0.42)                       # the alpha=0.5 run is its own group
    assert agg.loc[("knife", "strategyqa", '{"alpha": 0.5}')].n == 1
    assert "cd_addition" not in agg.index.get_level_values("method")       # no accuracy: no group


def test_aggregate_grouping_keys_and_metric(runs):
    df = report.collect_runs(runs)
    by_method = report.aggregate(df, by=["method"]).set_index("method")
    assert by_method.n.to_dict() == {"ft_io": 4, "knife": 3}
    assert math.isclose(by_method.loc["ft_io", "mean"], (0.5 + 0.6 + 0.7 + 0.3) / 4)
    t = report.aggregate(df[df.method == "cd_addition"], by=["method", "dataset"], metric="teacher")
    assert t.n.tolist() == [2] and math.isclose(t["mean"].iloc[0], 0.85) and t.metric.iloc[0] == "teacher"
    assert report.aggregate(df, metric="no_such_metric").empty


def _ref(tmp_path):
    p = tmp_path / "ref.csv"
    pd.DataFrame([
        dict(paper="P", table="T1", dataset="strategyqa", model="t5-base", method="ft_io", metric="accuracy", value="55", setting="", note="[TEXT]"),
        dict(paper="P", table="T1", dataset="openbookqa", model="t5-base", method="kard", metric="accuracy", value="59", setting="", note="[3P]"),
        dict(paper="P", table="T1", dataset="strategyqa", model="t5-base", method="knife", metric="accuracy", value="", setting="", note="garbled"),
        dict(paper="P", table="T2", dataset="strategyqa", model="t5-base", method="knife", metric="accuracy", value="80", setting="alpha=0.5", note=""),
        dict(paper="P", table="T3", dataset="addition", model="t5-small", method="cd_addition", metric="teacher", value="93", setting="", note=""),
        dict(paper="P", table="T4", dataset="spider", model="m", method="cd_spider", metric="teacher", value="27.7", setting="k=4", note=""),
        dict(paper="P", table="T4", dataset="spider", model="m", method="cd_spider", metric="teacher", value="28.2", setting="k=8", note=""),
        dict(paper="Q", table="T1", dataset="strategyqa", model="x", method="ft_io", metric="accuracy", value="1", setting="", note=""),
    ]).to_csv(p, index=False)
    return report.load_paper_numbers(p)


def test_paper_table_join(runs, tmp_path):
    df, ref = report.collect_runs(runs), _ref(tmp_path)
    t = report.paper_table(df, "P", ref=ref)
    assert set(t.paper) == {"P"} and len(t) == 8                              # knife T1: one row per flag setting
    ft = t[t.method == "ft_io"].iloc[0]
    assert math.isclose(ft.ours, 60.0) and math.isclose(ft.ours_std, 10.0) and ft.n == 3   # fraction -> paper percent
    assert math.isclose(ft["diff"], 5.0) and ft.paper_value == 55 and ft.our_model == "tiny-t5"
    kard = t[t.method == "kard"].iloc[0]                                       # not run: ours and diff empty
    assert kard.paper_value == 59 and math.isnan(kard.ours) and math.isnan(kard["diff"]) and kard.n == 0
    unknown = t[(t.table == "T1") & (t.method == "knife") & (t.our_flags == "{}")].iloc[0]   # paper unknown: ours kept, diff empty
    assert math.isnan(unknown.paper_value) and math.isclose(unknown.ours, 42.0) and math.isnan(unknown["diff"])
    assert unknown.note == "garbled"
    flagged = t[t.table == "T2"].iloc[0]                                       # setting matched against the flags
    assert math.isclose(flagged.ours, 90.0) and flagged.n == 1 and math.isclose(flagged["diff"], 10.0)
    assert flagged.our_flags == '{"alpha": 0.5}'
    cd = t[t.table == "T3"].iloc[0]
    assert math.isclose(cd.ours, 85.0) and cd.n == 2
    k4, k8 = t[t.table == "T4"].iloc[0], t[t.table == "T4"].iloc[1]          # int flag in a column with NaN (4.0)
    assert math.isclose(k4.ours, 20.0) and k4.n == 1 and math.isclose(k4["diff"], 20.0 - 27.7)
    assert math.isnan(k8.ours) and k8.n == 0
    assert report.paper_table(df, "P", ref=ref, match_model=True).ours.isna().all()   # nobody ran t5-base
    with pytest.raises(ValueError, match="paper='KNIFE'"):
        report.paper_table(df, "KNIFE", ref=ref)


def test_unit_factor():
    assert report.unit_factor("accuracy") == 100 and report.unit_factor("post_distill") == 100
    assert report.unit_factor("las") == 1 and report.unit_factor("token_saving") == 1 and report.unit_factor("margin_correlation_r") == 1


def test_malformed_records_skipped_with_warning(runs):
    (runs / "torn.json").write_text('{"run_id": "a", "config": {"meth')
    (runs / "list.json").write_text("[1, 2]")
    (runs / "noseed.json").write_text(json.dumps({"config": {"method": "m", "dataset": "d", "model": "x", "scale": "smoke"},
                                                  "metrics": {"accuracy": 1}}))
    (runs / "nometrics.json").write_text(json.dumps({"config": {"method": "m", "dataset": "d", "model": "x", "seed": 0, "scale": "smoke"}}))
    (runs / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = report.collect_runs(runs)
    assert len(df) == 10
    msgs = [str(w.message) for w in caught]
    for name in ("torn.json", "list.json", "noseed.json", "nometrics.json", "binary.json"):
        assert sum(name in m for m in msgs) == 1, (name, msgs)
    assert any("seed" in m for m in msgs if "noseed.json" in m)


def test_empty_runs_dir(tmp_path):
    df = report.collect_runs(tmp_path)
    assert df.empty and "method" in df.columns and report.aggregate(df).empty


def test_tables_figures_and_summary_written(runs, tmp_path):
    df = report.collect_runs(runs)
    out = tmp_path / "out"
    tables = report.write_tables(df, out)
    for name in ("overview", "paper_kard", "paper_scott", "paper_context_distillation"):
        assert name in tables
        md, tex = (out / "tables" / f"{name}.md").read_text(), (out / "tables" / f"{name}.tex").read_text()
        assert md.startswith("| ") and "tabular" in tex
    ov = (out / "tables" / "overview.md").read_text().splitlines()
    assert len(ov) == 2 + len(tables["overview"]) and any("ft_io | strategyqa" in l and "| 0.6 |" in l for l in ov)
    figs = report.write_figures(df, out, tables)
    names = {p.name for p in figs}
    assert {"accuracy_by_method.png", "accuracy_by_method.svg"} <= names
    assert "paper_context_distillation.png" in names                    # the cd_addition runs meet Table 3
    assert all(p.stat().st_size > 1000 for p in figs)
    assert (out / "figures" / "accuracy_by_method.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (out / "figures" / "accuracy_by_method.svg").read_bytes()[:500]


def test_summary_lists_sweeps_and_links_resolve(runs, tmp_path):
    sdir = tmp_path / "sweeps" / "smoke"
    atomic_write_json(sdir / "a.json", {"id": "10_strategyqa-1", "notebook": "nbs/10_strategyqa.ipynb", "status": "ok",
                                        "seconds": 12.5, "params": {"seed": 0, "scale": "smoke", "output_dir": "x"}})
    atomic_write_json(sdir / "b.json", {"id": "20_knife-2", "notebook": "nbs/20_knife.ipynb", "status": "failed", "seconds": 2,
                                        "params": {"seed": 0}, "error": "PapermillExecutionError: first line\nsecond line"})
    (runs / "bad.json").write_text("{")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = report.write_summary(tmp_path / "smoke" / "summary.md", runs_dir=runs, results_dir=tmp_path)
    text = p.read_text()
    assert "| smoke | 1 | 1 |" in text and "PapermillExecutionError: first line" in text and "second line" not in text
    assert "bad.json" in text and "12.50" in text
    import re
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert any(l.endswith(".png") for l in links) and any(l.endswith(".tex") for l in links)
    for l in links:
        assert not l.startswith("/") and (p.parent / l).is_file(), l


def test_cli(runs, tmp_path, capsys):
    assert report.main(["--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "summary.md").is_file() and "Summary:" in capsys.readouterr().out


def test_reference_csv_is_well_formed():
    ref = report.load_paper_numbers()
    assert list(ref.columns[:len(report.PAPER_COLUMNS)]) == list(report.PAPER_COLUMNS)
    assert set(ref.paper) == {"KARD", "SCOTT", "Context distillation"}       # KNIFE: no number known
    assert ref.note.str.match(r"^\[(TEXT|3P|ISSUE|RECALL|CODE|ABS)\]").all()  # every row keeps its source tag
    assert not ref.duplicated(["paper", "table", "dataset", "method", "metric", "setting"]).any()
    assert ref.value.isna().sum() == 2                                         # the two garbled Table 6 cells
    t3 = ref[(ref.paper == "Context distillation") & (ref.table == "Table 3")].set_index("metric").value
    assert t3.to_dict() == {"teacher": 93, "pre_distill": 0, "post_distill": 95, "sc_to_dir": 72, "sc_plus_dir": 61}


def test_error_line():
    assert report.error_line("ValueError: bad\nmore") == "ValueError: bad"
    pm = ('PapermillExecutionError: \n------\nException encountered at "In [3]":\n------\nKeyError    Traceback (most recent call last)\n'
          'Cell In[3], line 2\n----> 2 d["a"]\n\nKeyError: \'a\'\n')
    assert report.error_line(pm) == "PapermillExecutionError: KeyError: 'a' (cell In [3])"
    assert report.error_line("") == ""


def test_overview_keeps_budgets_apart(tmp_path):
    from knife_repro.leaderboard import leaderboard_config
    a = leaderboard_config("ft_io", "strategyqa", 0, "smoke", output_dir=str(tmp_path))
    write_run_record(a, {"accuracy": 0.5}); write_run_record(a.replace(epochs=1), {"accuracy": 0.7})
    ov = report.overview(report.collect_runs(tmp_path / "runs"))
    assert sorted(ov["mean"]) == [0.5, 0.7] and set(ov.n) == {1}


# ---- committed records, labels, sizes, the results table, --compare ----

def test_default_reads_records_then_results_and_a_later_duplicate_wins(tmp_path, monkeypatch):
    from knife_repro.core import PROJECT_ROOT
    assert report.DEFAULT_RUNS == (PROJECT_ROOT / "records" / "runs", PROJECT_ROOT / "results" / "runs")
    committed, fresh = tmp_path / "records", tmp_path / "results"
    _rec(committed, "ft_io", "strategyqa", 0, {"accuracy": 0.5})           # the same config in both folders
    _rec(fresh, "ft_io", "strategyqa", 0, {"accuracy": 0.7})                # (output_dir differs: not part of the identity)
    _rec(committed, "ft_io", "strategyqa", 1, {"accuracy": 0.6})            # only committed
    monkeypatch.setattr(report, "DEFAULT_RUNS", (committed / "runs", fresh / "runs"))
    df = report.collect_runs()
    assert len(df) == 2 and sorted(df.accuracy) == [0.6, 0.7]
    assert df.set_index("seed").loc[0, "source"] == "results"
    assert [Path(p).parent.parent.name for p in df.attrs["replaced"]] == ["records"]
    both = report.collect_runs([fresh / "runs", committed / "runs"])       # order decides: the later folder wins
    assert sorted(both.accuracy) == [0.5, 0.6]


def test_short_labels_name_only_what_differs(runs):
    df = report.collect_runs(runs)
    lab = df.set_index(["method", "dataset", "seed", "flags"]).label
    assert lab[("ft_io", "strategyqa", 0, "{}")] == "FT I→O"
    assert lab[("knife", "strategyqa", 0, "{}")] == "KNIFE (In+Out) (alpha=default)"
    assert lab[("knife", "strategyqa", 0, '{"alpha": 0.5}')] == "KNIFE (In+Out) (alpha=0.5)"
    assert lab[("cd_spider", "spider", 0, '{"k": 4}')] == "CD: SPIDER"       # no sibling: the method alone
    ov = report.overview(df)
    assert not ov.astype(str).apply(lambda c: c.str.contains('{"', regex=False)).any().any()
    assert set(ov.columns) >= {"config", "size", "record"} and set(ov["size"]) == {"1.97M"}


def test_model_sizes_from_records_and_presets():
    from knife_repro.models import load_causal, load_seq2seq, n_params
    from knife_repro.tables import MODEL_PARAMS, model_size
    for name, load in (("tiny-t5", load_seq2seq), ("tiny-gpt2", load_causal)):
        assert abs(MODEL_PARAMS[name] / n_params(load(name)[0]) - 1) < 0.01, name
    assert model_size("x", params=134515008) == "135M" and model_size("t5-3b") == "3B" and model_size("t5-base") == "220M"
    assert model_size("unknown-model") == "" and model_size("google/flan-t5-base") == "250M"


def test_paper_numbers_come_from_the_csv_with_the_papers_models():
    k = report.paper_numbers("KARD", method=["kard_rerank", "kard_ft"])
    assert set(k.table) >= {"Table 1", "Table 2"}
    k = k[k.table.str.startswith("Table")].set_index(["dataset", "method"])        # not the third-party reproduction rows
    # methods.md §2.12: MedQA numbers are Flan-T5-base, the StrategyQA/OBQA ones T5-base
    assert k.loc[("medqa", "kard_ft"), "model"] == "google/flan-t5-base" and k.loc[("medqa", "kard_ft"), "size"] == "250M"
    assert k.loc[("strategyqa", "kard_rerank"), "model"] == "t5-base" and k.loc[("openbookqa", "kard_rerank"), "size"] == "220M"
    assert report.paper_numbers("KNIFE").empty


def test_results_table_puts_the_paper_cell_beside_ours(tmp_path):
    ref = _ref(tmp_path)
    for s, a in enumerate((0.40, 0.50)):
        _rec(tmp_path, "kard", "openbookqa", s, {"accuracy": a, "accuracy_ci_low": a - 0.1, "accuracy_ci_high": a + 0.1})
    _rec(tmp_path, "cd_spider", "spider", 0, {"teacher": 0.2}, k=8)
    df = report.collect_runs(tmp_path / "runs")
    t = report.results_table(df, paper="P", ref=ref, method="kard").iloc[0]
    assert math.isclose(t["mean"], 45.0) and math.isclose(t["std"], 50 ** 0.5) and t.n == 2 and t.seeds == "0,1"
    assert math.isclose(t.ci_low, 35.0) and math.isclose(t.ci_high, 55.0)       # mean of the runs' bounds, in %
    assert t.paper == 59 and t.paper_model == "t5-base" and t["size"] == "1.97M" and t.record.endswith(".json")
    sp = report.results_table(df, metrics=["teacher"], paper="P", ref=ref, method="cd_spider").iloc[0]
    assert sp.paper == 28.2                                                       # the k=8 cell, not k=4's 27.7
    assert report.results_table(df, method="no_such_method").empty


def _cmp_rec(root, method, dataset, seed, acc, half=0.05):
    return _rec(root, method, dataset, seed, {"accuracy": acc, "accuracy_ci_low": acc - half, "accuracy_ci_high": acc + half})


def test_compare_flags_differences_beyond_the_seed_spread(tmp_path, capsys):
    ref, new = tmp_path / "ref", tmp_path / "new"
    for s, a in enumerate((0.50, 0.60, 0.70)):         # 3 seeds: spread = sample std = 10 points
        _cmp_rec(ref, "ft_io", "strategyqa", s, a)
    _cmp_rec(ref, "knife", "openbookqa", 0, 0.40)        # 1 seed: spread = CI half-width = 5 points
    _cmp_rec(ref, "ft_io", "openbookqa", 0, 0.30)        # committed, not re-run
    _cmp_rec(new, "ft_io", "strategyqa", 0, 0.58)        # +8 < 10: within
    _cmp_rec(new, "ft_io", "strategyqa", 2, 0.58)        # -12 > 10: differs
    _cmp_rec(new, "knife", "openbookqa", 0, 0.44)        # +4 < 5: within
    _cmp_rec(new, "knife", "strategyqa", 0, 0.90)        # no committed counterpart
    _rec(new, "ft_io", "strategyqa", 1, {"accuracy": 0.1}, epochs=3)   # another budget (default 1): not the same point
    t, line = report.compare(new / "runs", ref / "runs", metrics=["accuracy"])
    t = t.set_index("point")
    assert len(t) == 3
    row = lambda m, d, s: t.loc[[p for p in t.index if p.startswith(m) and f"· {d} ·" in p and p.endswith(f"seed {s}")][0]]
    r0, r2, k0 = row("FT I→O", "strategyqa", 0), row("FT I→O", "strategyqa", 2), row("KNIFE", "openbookqa", 0)
    assert math.isclose(r0["diff"], 8.0) and math.isclose(r0.spread, 10.0) and r0.flag == "" and "3 seeds" in r0.basis
    assert math.isclose(r2["diff"], -12.0) and r2.flag == "DIFFERS" and math.isclose(r2.committed, 70.0)
    assert math.isclose(k0.spread, 5.0) and k0.basis == "CI half-width" and k0.flag == ""
    assert line.startswith("3 of 5 committed records re-run (3 numbers compared): 1 differ")
    assert "2 fresh record(s) have no committed counterpart" in line
    assert report.main(["--compare", "--fresh", str(new / "runs"), "--reference", str(ref / "runs")]) == 0
    out = capsys.readouterr().out
    assert "DIFFERS" in out and out.strip().splitlines()[-1] == line


def test_compare_on_the_committed_records_finds_no_difference():
    t, line = report.compare(report.RECORDS_DIR, report.RECORDS_DIR)
    assert len(t) and (t["diff"] == 0).all() and not (t.flag == "DIFFERS").any()
