"Leaderboard: one student, split, seeds and budget for every method; the sweep file covers every method and dataset."
import math
import warnings

import pytest

from knife_repro import leaderboard, report
from knife_repro.core import atomic_write_json, write_run_record

from knife_repro.core import ConfigError
from knife_repro.faithfulness import FAITHFULNESS
from knife_repro.leaderboard import (BUDGET, DATASETS, LEADERBOARD, RATIONALE, STUDENT, leaderboard_config)
from knife_repro.sweep import excluded_points, load_sweep, points

SHARED = ("model", "seed", "scale", "train_fraction", "optimizer", "lr", "weight_decay", "scheduler", "warmup_ratio",
          "batch_size", "grad_accum", "epochs", "max_steps", "early_stopping_patience", "max_source_len",
          "max_target_len", "max_train_samples", "max_eval_samples")


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_method_gets_the_same_student_and_budget(scale):
    cfgs = [leaderboard_config(m, d, 1, scale) for m in LEADERBOARD for d in DATASETS]
    for k in SHARED:
        assert len({getattr(c, k) for c in cfgs}) == 1, k
    assert cfgs[0].model == STUDENT[scale] and all(getattr(cfgs[0], k) == v for k, v in BUDGET[scale].items())
    assert leaderboard_config("ft_io", "strategyqa", 0, scale, model="x").model == "x"


def test_method_flags_are_accepted_by_the_methods():
    from knife_repro import kard, knife, scott
    from knife_repro.train import method_module
    for m in LEADERBOARD:
        assert method_module(m)                                          # every method is dispatchable
    for m in ("kard_rd", "kard_rerank"):
        f = kard._flags(leaderboard_config(m, "openbookqa", 0, "paper"))
        assert f["faithfulness"] is True and f["n_rationales"] == 10
    knife.resolve_flags(leaderboard_config("knife", "openbookqa", 0, "smoke"))
    for scale in ("smoke", "paper"):
        f = scott.scott_flags(leaderboard_config("scott", "strategyqa", 0, scale))
        fa = FAITHFULNESS[scale]
        assert (f["simulator"], f["sim_epochs"], f["sim_lr"], f["n_boot"], f["perturb_fraction"]) == \
            (fa["simulator"], fa["sim_epochs"], fa["sim_lr"], fa["n_boot"], fa["perturb_fraction"])
    with pytest.raises(ConfigError, match="no SCOTT teacher prompt"):          # why the sweep excludes it
        scott.scott_flags(leaderboard_config("scott", "openbookqa", 0, "smoke"))
    for m in set(RATIONALE) - {"scott"}:
        assert leaderboard_config(m, "strategyqa", 0, "smoke").flags["faithfulness"] is True
    for m in set(LEADERBOARD) - set(RATIONALE):
        assert "faithfulness" not in leaderboard_config(m, "strategyqa", 0, "smoke").flags
    with pytest.raises(ConfigError, match="not on the leaderboard"):
        leaderboard_config("cd_addition", "strategyqa")
    with pytest.raises(ConfigError, match="dataset"):
        leaderboard_config("ft_io", "medqa")


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_sweep_file_covers_the_board(scale, tmp_path):
    sw = load_sweep("sweeps/leaderboard.yaml", scale)
    assert sw.grid["method"] == list(LEADERBOARD) and sw.grid["dataset"] == list(DATASETS)
    ex = excluded_points(sw, tmp_path)
    assert {(p["params"]["method"], p["params"]["dataset"]) for p in ex} == {("scott", "openbookqa")}
    assert len(points(sw, tmp_path)) + len(ex) == len(LEADERBOARD) * len(DATASETS) * len(sw.seeds)
    assert scale == "smoke" or sw.seeds == [0, 1, 2]


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
    pts = leaderboard.leaderboard_points(sweep, "smoke", root)
    assert len(pts) == 24 and pts.run_id.is_unique
    assert pts.status.value_counts().to_dict() == {"not run": 20, "excluded": 3, "failed": 1}
    assert set(pts[pts.status == "excluded"].reason) == {"no prompt here"}
    assert pts[pts.status == "failed"].reason.tolist() == ["ValueError: no rows"]
    r = pts[(pts.method == "ft_iro") & (pts.dataset == "strategyqa") & (pts.seed == 2)].iloc[0]
    assert r.run_id == leaderboard_config("ft_iro", "strategyqa", 2, "smoke").run_id


def test_leaderboard_table_cells(board):
    sweep, root = board
    df = report.collect_runs(root / "runs")
    pts = leaderboard.leaderboard_points(sweep, "smoke", root)
    wide, missing = leaderboard.leaderboard_tables(df, pts)
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
    nums = leaderboard.leaderboard_numbers(df, pts).set_index(["method", "dataset", "metric"])
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
    assert "Student: `tiny-t5` (1.97M)." in text                               # the model and its size
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


def test_leaderboard_never_imports_the_report():
    "One direction only: the report calls the leaderboard's rendering; the leaderboard module never imports the report."
    import ast
    import knife_repro.leaderboard as lb
    tree = ast.parse(open(lb.__file__).read())
    names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert names and not any(m.endswith("report") for m in names), names
    assert report.write_leaderboard is lb.write_leaderboard


# ---- one resolution: a leaderboard point is the run the method's config and the CLI resolve ----

def _cli(method, dataset, seed, scale, **params):
    import json
    from knife_repro.train import config_from_args
    items = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in params.items()]
    return config_from_args(["--set", f"method={method}", f"dataset={dataset}", f"seed={seed}", f"scale={scale}", *items])[0]


@pytest.mark.parametrize("method", list(LEADERBOARD))
def test_cpu_points_are_the_methods_own_cpu_runs(method):
    "At cpu scale the budget is CPU_BUDGET, every QA method's cpu preset: the CLI with the method's flags alone is the point."
    from knife_repro.core import CPU_BUDGET
    from knife_repro.leaderboard import method_flags
    lb = leaderboard_config(method, "strategyqa", 1, "cpu")
    assert {k: getattr(lb, k) for k in CPU_BUDGET} == CPU_BUDGET and lb.model == "smollm2-135m" == STUDENT["cpu"]
    assert (lb.lr, lb.batch_size, lb.epochs, lb.max_train_samples) == (3e-5, 8, 1, 600)
    cli = _cli(method, "strategyqa", 1, "cpu", **method_flags(method, "cpu", "strategyqa"))
    assert cli.to_dict() == lb.to_dict() and cli.run_id == lb.run_id


def test_cpu_ft_io_and_knife_points_share_records_with_their_notebooks():
    from knife_repro.baselines import BaselineConfig
    from knife_repro.knife import KnifeConfig
    for cls, m in ((BaselineConfig, "ft_io"), (KnifeConfig, "knife")):   # what 20_knife's `config_for` resolves
        nb = cls.resolve(method=m, lenient=True, dataset="openbookqa", seed=2, scale="cpu", output_dir="results",
                         model=None, kd=None, train_fraction=None)
        assert nb.run_id == leaderboard_config(m, "openbookqa", 2, "cpu").run_id


@pytest.mark.parametrize("scale", ["smoke", "paper"])
@pytest.mark.parametrize("method", ["ft_iro", "knife", "kard_rerank", "scott"])
def test_points_and_the_cli_with_the_same_parameters_are_one_run(method, scale):
    from knife_repro.leaderboard import BUDGET_DEFAULTS, method_flags
    lb = leaderboard_config(method, "strategyqa", 0, scale)
    cli = _cli(method, "strategyqa", 0, scale, model=STUDENT[scale], **{**BUDGET_DEFAULTS, **BUDGET[scale]},
               **method_flags(method, scale))
    assert cli.to_dict() == lb.to_dict() and cli.run_id == lb.run_id
    # no method preset leaks into the shared budget (BASELINE_PRESETS' paper grad_accum 2 and patience 3, KARD's constant
    # schedule, SCOTT's Adafactor): the fields BUDGET does not name keep RunConfig's defaults
    assert (lb.grad_accum, lb.early_stopping_patience, lb.scheduler, lb.optimizer) == (1, 0, "linear", "adamw")


# ---- cpu: a leaderboard point IS the per-method cpu table's point ----

def _sweep_cfg(params):
    "The config `--runner cli` resolves for a sweep point's parameters."
    from knife_repro.sweep import cli_args
    from knife_repro.train import config_from_args
    return config_from_args(["--set", *cli_args(params)])[0]


def _per_method_point(sweep, **want):
    "The one cpu point of a per-method sweep whose parameters contain `want` (no `overrides`: the main table's)."
    pts = [p for p in points(load_sweep(f"sweeps/{sweep}.yaml", "cpu"), "records")
           if all(p["params"].get(k) == v for k, v in want.items()) and not p["params"].get("overrides")]
    assert len(pts) == 1, (sweep, want, len(pts))
    return pts[0]["params"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpu_points_are_the_per_method_sweeps_points(dataset, seed):
    "KNIFE grid (sweeps/knife.yaml), KARD (sweeps/kard.yaml), SCOTT (sweeps/scott.yaml): the same resolved config, run id."
    per = {m: _per_method_point("knife", method=m, dataset=dataset, seed=seed)
           for m in ("ft_io", "ft_ior", "ft_iro", "ft_ir_o", "knife")}
    source = {"strategyqa": "file", "openbookqa": "hf"}[dataset]       # KARD's LLM rationales per dataset
    per.update({m: _per_method_point("kard", method=m, dataset=dataset, seed=seed, rationale_source=source)
                for m in ("kard_rd", "kard_rerank")})
    if dataset == "strategyqa":
        per["scott"] = _per_method_point("scott", dataset=dataset, seed=seed, rationales="cd_wrong", counterfactual=True)
    assert set(per) == set(LEADERBOARD) - ({"scott"} if dataset == "openbookqa" else set())
    for m, params in per.items():
        theirs, ours = _sweep_cfg(params), leaderboard_config(m, dataset, seed, "cpu", output_dir="records")
        assert ours.to_dict() == theirs.to_dict(), m
        assert ours.run_id == theirs.run_id, m


def test_cpu_leaderboard_sweep_resolves_its_own_points():
    "The leaderboard sweep's cpu points, run with --runner cli, are the configs the leaderboard reads (same run ids)."
    sw = load_sweep("sweeps/leaderboard.yaml", "cpu")
    pts = leaderboard.leaderboard_points("sweeps/leaderboard.yaml", "cpu", "records")
    assert len(pts) == 48 and pts.run_id.is_unique
    by_point = dict(zip(pts.point, pts.run_id))
    for p in points(sw, "records"):
        assert _sweep_cfg(p["params"]).run_id == by_point[p["id"]]


def test_cpu_dry_run_counts_committed_records_as_done():
    "With --runner cli, a point is done exactly when its record is committed under records/runs."
    from pathlib import Path
    from knife_repro.sweep import plan
    sw = load_sweep("sweeps/leaderboard.yaml", "cpu")
    for p in plan(sw, "records", runner="cli"):
        rid = _sweep_cfg(p["params"]).run_id
        assert (p["state"] == "done") == (Path("records/runs") / f"{rid}.json").is_file(), p["id"]


def test_cpu_flags_need_the_dataset_and_match_on_method_and_dataset(tmp_path):
    from knife_repro.leaderboard import cpu_flags, method_flags
    with pytest.raises(ConfigError, match="needs the dataset"):
        method_flags("kard_rd", "cpu")
    assert method_flags("ft_io", "cpu", "openbookqa") == {}
    assert method_flags("kard_rd", "cpu", "openbookqa")["rationale_source"] == "hf"
    assert method_flags("kard_rerank", "cpu", "strategyqa")["rationale_source"] == "file"
    bad = tmp_path / "lb.yaml"
    bad.write_text("notebook: nbs/32_leaderboard.ipynb\ngrid: {method: [ft_io], dataset: [strategyqa]}\n"
                   "assign: [{seed: 0, set: {lr: 1.0}}]\n")
    with pytest.raises(ConfigError, match="method and dataset only"):
        cpu_flags("ft_io", "strategyqa", bad)


# ---- the cpu table: paired differences, blank LAS, cost, missing points ----

@pytest.fixture
def cpu_board(tmp_path):
    """4 methods x 2 datasets x seeds 0, 1 (smoke configs); StrategyQA records on questions q0..q3 (gold 1 each):
    FT I→O right on {q0,q1} (seed 0) and {q0} (seed 1); FT I→RO on {q0,q1,q2} and {q0,q1}, no LAS; KNIFE seed 0 on all
    four; SCOTT seed 0 on {q0,q1} with LAS; OBQA: FT I→O seed 0 only. SCOTT x OBQA excluded."""
    from knife_repro.core import PROJECT_ROOT
    sweep = tmp_path / "lb.yaml"
    sweep.write_text(f"notebook: {PROJECT_ROOT / 'nbs' / '32_leaderboard.ipynb'}\nseeds: [0, 1]\n"
                     "grid: {method: [ft_io, ft_iro, knife, scott], dataset: [strategyqa, openbookqa]}\n"
                     "exclude: [{method: scott, dataset: openbookqa, reason: no prompt here}]\n")
    def rec(method, seed, right, timings, dataset="strategyqa", **metrics):
        cfg = leaderboard_config(method, dataset, seed, "smoke", output_dir=str(tmp_path))
        ex = [{"id": f"q{i}", "pred": int(i in right), "gold": 1} for i in range(4)]
        write_run_record(cfg, {"accuracy": len(right) / 4, **metrics}, per_example=ex, timings=timings)
    rec("ft_io", 0, {0, 1}, {"train_s": 60.0, "eval_s": 30.0, "load_s": 5.0}, gen_tokens_per_question=0.0,
        scored_tokens_per_question=2.0)
    rec("ft_io", 1, {0}, {"train_s": 120.0, "eval_s": 30.0, "tokens_per_s": 99.0}, gen_tokens_per_question=0.0,
        scored_tokens_per_question=4.0)
    rec("ft_iro", 0, {0, 1, 2}, {"train_s": 180.0, "faithfulness_s": 999.0})
    rec("ft_iro", 1, {0, 1}, {"train_s": 150.0, "teacher_states_s": 30.0})
    rec("knife", 0, {0, 1, 2, 3}, {"train_s": 30.0, "teacher_states_s": 30.0})
    rec("scott", 0, {0, 1}, {"teacher_s": 60.0, "train_s": 240.0}, las=4.0, las_ci_low=-2.0, las_ci_high=10.0,
        own_rationale_accuracy=0.5, perturbed_accuracy=0.25, gen_tokens_per_question=41.5, scored_tokens_per_question=0.0)
    rec("ft_io", 0, {0}, {"train_s": 6.0}, dataset="openbookqa")
    from knife_repro.tables import load_records
    pts = leaderboard.leaderboard_points(sweep, "smoke", tmp_path)
    return load_records(tmp_path / "runs"), pts, tmp_path


def test_cpu_detail_paired_difference_from_ft_io(cpu_board):
    recs, pts, _ = cpu_board
    d = leaderboard.leaderboard_detail(recs, pts).set_index(["dataset", "method"])
    iro = d.loc[("strategyqa", "ft_iro")]
    # per seed 3/4 - 2/4 and 2/4 - 1/4: +25 points; discordant pairs q2 (seed 0) and q1 (seed 1), both FT I→RO's:
    # exact McNemar p = 2 * 0.5^2 = 0.5; every question differs by 0 or +1/2 averaged over seeds, so the CI is within
    assert iro["diff"] == pytest.approx(0.25) and iro["p"] == pytest.approx(0.5)
    assert (iro["diff_seeds"], iro["diff_questions"]) == ("0,1", 4)
    assert 0 <= iro["diff_ci_low"] <= 0.25 <= iro["diff_ci_high"] <= 0.5
    kn = d.loc[("strategyqa", "knife")]                     # seed 0 only: 4/4 - 2/4, discordant q2, q3
    assert (kn["diff"], kn["p"], kn["diff_seeds"]) == (pytest.approx(0.5), pytest.approx(0.5), "0")
    sc = d.loc[("strategyqa", "scott")]                     # the same questions right: Δ 0, no discordant pair, p 1
    assert (sc["diff"], sc["p"]) == (0.0, 1.0)
    ref = d.loc[("strategyqa", "ft_io")]
    assert math.isnan(ref["diff"]) and ref["acc_mean"] == pytest.approx(0.375) and ref["acc_n"] == 2
    assert ref["acc_std"] == pytest.approx(0.1767767, abs=1e-6)           # sample std of 0.5 and 0.25
    t = leaderboard.detail_table(leaderboard.leaderboard_detail(recs, pts)).set_index(["dataset", "method"])
    assert t.loc[("StrategyQA", "FT I→RO"), "Δ vs FT I→O [95% CI]"].startswith("+25.0 [")
    assert t.loc[("StrategyQA", "FT I→RO"), "p"] == "0.5" and t.loc[("StrategyQA", "FT I→O"), "Δ vs FT I→O [95% CI]"] == "reference"
    assert t.loc[("StrategyQA", "FT I→O"), "accuracy %"] == "37.5 ± 17.7 (n=2)"
    assert t.loc[("StrategyQA", "SCOTT"), "accuracy %"] == "50.0 (n=1 of 2)"


def test_cpu_detail_las_blank_not_zero(cpu_board):
    recs, pts, _ = cpu_board
    t = leaderboard.detail_table(leaderboard.leaderboard_detail(recs, pts)).set_index(["dataset", "method"])
    assert t.loc[("StrategyQA", "FT I→RO"), "LAS [95% CI]"] == ""          # writes a rationale, no record has LAS
    assert t.loc[("StrategyQA", "FT I→RO"), "own / perturbed %"] == ""
    assert t.loc[("StrategyQA", "FT I→O"), "LAS [95% CI]"] == "–"          # writes none
    assert t.loc[("StrategyQA", "SCOTT"), "LAS [95% CI]"] == "4.0 [-2.0, 10.0]"
    assert t.loc[("StrategyQA", "SCOTT"), "own / perturbed %"] == "50.0 / 25.0"
    assert "0.0" not in t.loc[("StrategyQA", "FT I→RO")].tolist()


def test_cpu_detail_cost_columns(cpu_board):
    recs, pts, _ = cpu_board
    d = leaderboard.leaderboard_detail(recs, pts).set_index(["dataset", "method"])
    # training minutes: every *_s timing but load, eval, faithfulness (and the tokens_per_s rate)
    assert d.loc[("strategyqa", "ft_io"), "train_min"] == pytest.approx((60 / 60 + 120 / 60) / 2)
    assert d.loc[("strategyqa", "ft_iro"), "train_min"] == pytest.approx(3.0)     # 180 s; 150 + 30 s
    assert d.loc[("strategyqa", "knife"), "train_min"] == pytest.approx(1.0)      # train + teacher states
    assert d.loc[("strategyqa", "scott"), "train_min"] == pytest.approx(5.0)      # teacher decoding + train
    assert d.loc[("strategyqa", "ft_io"), "gen_tokens"] == 0.0
    assert d.loc[("strategyqa", "ft_io"), "scored_tokens"] == pytest.approx(3.0)      # (2 + 4) / 2 seeds
    assert math.isnan(d.loc[("strategyqa", "ft_iro"), "gen_tokens"])
    t = leaderboard.detail_table(d.reset_index()).set_index(["dataset", "method"])
    tok = "tokens / question: generated + scored"
    assert (t.loc[("StrategyQA", "FT I→O"), "train min"], t.loc[("StrategyQA", "FT I→O"), tok]) == ("1.5", "0.0 + 3.0")
    assert t.loc[("StrategyQA", "SCOTT"), tok] == "41.5 + 0.0"
    assert t.loc[("StrategyQA", "FT I→RO"), tok] == ""                  # the record does not store it: blank
    assert leaderboard.train_minutes({"timings": {"train_s": 90, "eval_s": 600, "total_s": 700}}) == 1.5


def test_cpu_missing_points_listed(cpu_board):
    recs, pts, _ = cpu_board
    have = {r["run_id"] for r in leaderboard.board_records(recs, pts)}
    assert len(have) == 7
    lines = leaderboard.missing_lines(pts, have)
    assert lines == ["- pending: FT I→O · OpenBookQA (seeds 1)",
                     "- pending: FT I→RO · OpenBookQA (seeds 0, 1)",
                     "- pending: KNIFE (In+Out) · StrategyQA (seeds 1)",
                     "- pending: KNIFE (In+Out) · OpenBookQA (seeds 0, 1)",
                     "- pending: SCOTT · StrategyQA (seeds 1)",
                     "- excluded: SCOTT · OpenBookQA (seeds 0, 1): no prompt here"]
    t = leaderboard.detail_table(leaderboard.leaderboard_detail(recs, pts)).set_index(["dataset", "method"])
    assert t.loc[("OpenBookQA", "SCOTT"), "accuracy %"] == "excluded"
    assert t.loc[("OpenBookQA", "FT I→RO"), "accuracy %"] == "not run"


def test_cpu_readme_block(cpu_board, tmp_path, monkeypatch):
    recs, pts, root = cpu_board
    monkeypatch.setattr(leaderboard, "leaderboard_points", lambda sweep, scale, results_dir=None: pts)
    text = leaderboard.cpu_readme_block(root / "runs", fig_dir=tmp_path / "figs")
    assert "| StrategyQA | FT I→RO | 62.5 ± 17.7 (n=2) | +25.0 [" in text
    assert "7 of 14 points have a committed record (2 excluded)" in text
    assert "- excluded: SCOTT · OpenBookQA (seeds 0, 1): no prompt here" in text and "- pending: SCOTT · StrategyQA (seeds 1)" in text
    assert f"![accuracy vs LAS, cpu scale]({tmp_path / 'figs' / 'leaderboard_cpu.png'})" in text
    assert not (tmp_path / "figs").exists()                      # rendering the block writes nothing ...
    figs = leaderboard.write_cpu_figure(root / "runs", fig_dir=tmp_path / "figs")    # ... the README rebuild does
    assert figs[0] == tmp_path / "figs" / "leaderboard_cpu.png" and figs[0].read_bytes()[:4] == b"\x89PNG"
    empty = leaderboard.cpu_readme_block(tmp_path / "none", fig_dir=tmp_path / "figs2")
    assert "No committed record" in empty and "0 of 14 points" in empty and not (tmp_path / "figs2").exists()
    assert leaderboard.write_cpu_figure(tmp_path / "none", fig_dir=tmp_path / "figs2") == []
