"Report: collecting records, seed aggregation, the paper-table join, skipped files, written tables and figures."
import json
import math
import warnings

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


# ---- the cross-method leaderboard ----

@pytest.fixture
def board(tmp_path):
    "A leaderboard sweep of 4 methods x 2 datasets x 3 seeds, with constructed records and statuses."
    from knife_repro.core import PROJECT_ROOT
    from knife_repro.leaderboard import leaderboard_config
    from knife_repro.sweep import all_points, load_sweep, status_path
    sweep = tmp_path / "lb.yaml"
    sweep.write_text(f"notebook: {PROJECT_ROOT / 'nbs' / '32_leaderboard.ipynb'}\nseeds: [0, 1, 2]\n"
                     "grid: {method: [ft_io, ft_ior, ft_iro, scott], dataset: [strategyqa, openbookqa]}\n"
                     "exclude: [{method: scott, dataset: openbookqa, reason: no prompt here}]\n")
    def rec(method, dataset, seed, **metrics):
        write_run_record(leaderboard_config(method, dataset, seed, "smoke", output_dir=str(tmp_path)), metrics)
    for s, a in enumerate((0.50, 0.60, 0.70)):
        rec("ft_io", "strategyqa", s, accuracy=a, accuracy_ci_low=a - 0.1, accuracy_ci_high=a + 0.1)
        rec("ft_iro", "strategyqa", s, accuracy=a / 2, las=10.0 * s, las_ci_low=-4.0, las_ci_high=20.0 + s,
            perturbed_accuracy=0.25, own_rationale_accuracy=a / 2)
    rec("ft_io", "openbookqa", 0, accuracy=0.30)
    rec("ft_ior", "strategyqa", 0, accuracy=0.40, las=5.0, las_ci_low=1.0, las_ci_high=9.0)
    rec("ft_ior", "strategyqa", 1, accuracy=0.42)                     # LAS not computed in this seed
    write_run_record(leaderboard_config("scott", "strategyqa", 2, "smoke", output_dir=str(tmp_path)),
                     {"accuracy": 0.55, "perturbed_accuracy": 0.5}, notes=["LAS not computed: no valid y_hat"])
    # decoys that must not count: the same method, dataset and seed with another budget or student
    write_run_record(leaderboard_config("ft_io", "strategyqa", 0, "smoke", output_dir=str(tmp_path)).replace(epochs=1),
                     {"accuracy": 0.99})
    write_run_record(leaderboard_config("ft_io", "openbookqa", 1, "smoke", model="small-t5", output_dir=str(tmp_path)),
                     {"accuracy": 0.99})
    sw = load_sweep(sweep, "smoke")
    for p in all_points(sw, tmp_path):
        prm = p["params"]
        if prm["method"] == "ft_iro" and prm["dataset"] == "openbookqa" and prm["seed"] == 1:
            atomic_write_json(status_path(sw, p, tmp_path), {"id": p["id"], "status": "failed", "params": prm,
                                                             "error": "ValueError: no rows\nmore"})
    return sweep, tmp_path


def test_leaderboard_points_states_and_run_ids(board):
    from knife_repro.leaderboard import leaderboard_config
    sweep, root = board
    pts = report.leaderboard_points(sweep, "smoke", root)
    assert len(pts) == 24 and pts.run_id.is_unique
    assert pts.status.value_counts().to_dict() == {"not run": 20, "excluded": 3, "failed": 1}
    assert set(pts[pts.status == "excluded"].reason) == {"no prompt here"}
    assert pts[pts.status == "failed"].reason.tolist() == ["ValueError: no rows"]
    r = pts[(pts.method == "ft_iro") & (pts.dataset == "strategyqa") & (pts.seed == 2)].iloc[0]
    assert r.run_id == leaderboard_config("ft_iro", "strategyqa", 2, "smoke").run_id


def test_leaderboard_table_cells(board):
    sweep, root = board
    df = report.collect_runs(root / "runs")
    pts = report.leaderboard_points(sweep, "smoke", root)
    wide, missing = report.leaderboard_tables(df, pts)
    t = wide.set_index("method")
    assert list(t.index) == ["FT I→O", "FT I→OR", "FT I→RO", "SCOTT"]
    assert list(t.columns) == [f"{d} {m}" for d in ("StrategyQA", "OpenBookQA") for m in ("accuracy", "LAS", "perturbed")]
    assert t.loc["FT I→O", "StrategyQA accuracy"] == "60.0 ± 10.0 (n=3)"            # decoys left out
    assert t.loc["FT I→O", "OpenBookQA accuracy"] == "30.0 (n=1 of 3)"
    assert t.loc["FT I→O", "StrategyQA LAS"] == "–" and t.loc["FT I→O", "StrategyQA perturbed"] == "–"
    assert t.loc["FT I→RO", "StrategyQA accuracy"] == "30.0 ± 5.0 (n=3)"
    assert t.loc["FT I→RO", "StrategyQA LAS"] == "10.0 ± 10.0 [-4.0, 21.0]"
    assert t.loc["FT I→RO", "StrategyQA perturbed"] == "25.0 ± 0.0 (own 30.0 ± 5.0)"
    assert t.loc["FT I→OR", "StrategyQA LAS"] == "5.0 [1.0, 9.0] (n=1 of 3)"        # one of its two records has LAS
    assert t.loc["FT I→OR", "StrategyQA accuracy"] == "41.0 ± 1.4 (n=2 of 3)"
    assert t.loc["FT I→OR", "StrategyQA perturbed"] == "n/a"
    assert t.loc["FT I→RO", "OpenBookQA accuracy"] == "not run / failed"
    assert t.loc["SCOTT", "StrategyQA LAS"] == "not computed" and t.loc["SCOTT", "OpenBookQA accuracy"] == "excluded"
    # every point without a record is listed, with its state and reason
    assert len(missing) == 24 - 10
    key = lambda r: (r.method, r.dataset, r.seed)
    from knife_repro.leaderboard import LEADERBOARD
    labelled = pts.assign(method=pts.method.map(LEADERBOARD))
    recorded = {key(r) for r in labelled.itertuples() if r.run_id in set(df.run_id)}
    assert len(recorded) == 10 and {key(r) for r in missing.itertuples()} == {key(r) for r in labelled.itertuples()} - recorded
    assert missing[missing.status == "excluded"].method.tolist() == ["SCOTT"] * 3
    assert missing[missing.status == "failed"].reason.tolist() == ["ValueError: no rows"]
    nums = report.leaderboard_numbers(df, pts).set_index(["method", "dataset", "metric"])
    assert nums.loc[("ft_io", "strategyqa", "accuracy"), "seeds"] == "0,1,2"
    assert nums.loc[("ft_io", "strategyqa", "accuracy"), "ci_low"] == pytest.approx(0.5)


def test_leaderboard_in_summary(board):
    sweep, root = board
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = report.write_summary(root / "out" / "summary.md", runs_dir=root / "runs", results_dir=root, leaderboard=sweep)
    text = p.read_text()
    assert "## Cross-method leaderboard" in text and "### smoke scale: 10 of 24 points have a run record" in text
    assert "60.0 ± 10.0 (n=3)" in text and "no prompt here" in text and "ValueError: no rows" in text
    assert "- SCOTT · strategyqa · seed 2: LAS not computed: no valid y_hat" in text
    for ext in ("md", "tex"):
        assert (root / "out" / "tables" / f"leaderboard_smoke.{ext}").is_file()
    assert "StrategyQA accuracy" in (root / "out" / "tables" / "leaderboard_smoke.tex").read_text()
    assert (root / "out" / "figures" / "leaderboard_smoke.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (root / "out" / "figures" / "leaderboard_smoke.svg").read_bytes()[:500]
    import re
    for l in re.findall(r"\]\(([^)]+)\)", text):
        assert (p.parent / l).is_file(), l
    p2 = report.write_summary(root / "out2" / "summary.md", runs_dir=root / "runs", results_dir=root / "elsewhere",
                              leaderboard=sweep)
    assert "has run yet" in p2.read_text()


def test_overview_keeps_budgets_apart(tmp_path):
    from knife_repro.leaderboard import leaderboard_config
    a = leaderboard_config("ft_io", "strategyqa", 0, "smoke", output_dir=str(tmp_path))
    write_run_record(a, {"accuracy": 0.5}); write_run_record(a.replace(epochs=1), {"accuracy": 0.7})
    ov = report.overview(report.collect_runs(tmp_path / "runs"))
    assert sorted(ov["mean"]) == [0.5, 0.7] and set(ov.n) == {1}
