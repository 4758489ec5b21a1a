"The command line entry point, alone and under a 2-process accelerate launch on the CPU."
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from knife_repro.core import ConfigError
from knife_repro.train import config_from_args, main, method_module, read_config_file

BIN = Path(sys.executable).parent
ARGS = ["method=ft_io", "dataset=toy", "epochs=1", "lr=3e-3", "batch_size=16", "max_train_samples=256"]


def test_config_file_and_overrides(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("method: ft_iro\ndataset: strategyqa\nlr: 1.0e-4\nflags: {rationale_source: llm}\n")
    cfg, _ = config_from_args(["--config", str(f), "--set", "seed=3", "train_fraction=0.5"])
    assert (cfg.method, cfg.seed, cfg.lr, cfg.train_fraction) == ("ft_iro", 3, 1e-4, 0.5)
    assert cfg.flags["rationale_source"] == "llm"


def test_bad_inputs_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"; bad.write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        read_config_file(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="key=value"):
        config_from_args(["--set", "seed"])
    with pytest.raises(ConfigError, match="known methods"):
        method_module("no_such_method")


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("bad, first_words", [
    ("scale=huge", "error: scale='huge'"),
    ("dataset=no_such_dataset", "error: unknown dataset 'no_such_dataset'"),
    ("model=no-such-model", "error: cannot load seq2seq model 'no-such-model'"),
])
def test_cli_bad_parameter_is_one_error_line_not_a_traceback(tmp_path, bad, first_words):
    cmd = [sys.executable, "-m", "knife_repro.train", "--set", *ARGS, bad, f"output_dir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**_env(), "HF_HUB_OFFLINE": "1",
                         "TRANSFORMERS_OFFLINE": "1"}, timeout=300)
    err = [l for l in out.stderr.splitlines() if l.strip() and "is ignored" not in l]
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and len(err) == 1 and err[0].startswith(first_words), out.stderr[-3000:]
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))


def test_two_process_cpu_launch_trains_data_parallel_and_writes_one_record(tmp_path):
    # `--cpu` would start one process; `--multi_gpu` starts torchrun, which on a machine
    # without CUDA gives accelerate's MULTI_CPU (gloo) state: the data-parallel path.
    cmd = [str(BIN / "accelerate"), "launch", "--num_processes", "2", "--num_machines", "1", "--multi_gpu",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "knife_repro.train",
           "--set", *ARGS, f"output_dir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, "\n".join(l for l in out.stderr.splitlines() if "is ignored" not in l)[-6000:]
    recs = list((tmp_path / "runs").glob("*.json"))
    assert len(recs) == 1
    t = json.loads(recs[0].read_text())["timings"]
    # 256 toy examples, batch 16: 16 batches, split over 2 processes -> 8 optimiser steps each
    assert t["processes"] == 2 and t["optimizer_steps"] == 8
