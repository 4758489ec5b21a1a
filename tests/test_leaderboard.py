"Leaderboard: one student, split, seeds and budget for every method; the sweep file covers every method and dataset."
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
    cli = _cli(method, "strategyqa", 1, "cpu", **method_flags(method, "cpu"))
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
