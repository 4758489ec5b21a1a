"Leaderboard: one student, split, seeds and budget for every method; the sweep file covers every method and dataset."
import pytest

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
