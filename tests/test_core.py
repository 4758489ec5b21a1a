"Run configs, data-root resolution and atomic run records."
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from knife_repro import core
from knife_repro.core import ConfigError, DataNotFoundError, RunConfig


def test_config_roundtrip_from_papermill_params():
    # papermill -p passes strings or parsed YAML scalars; sweeps pass python values
    params = {"method": "knife", "dataset": "openbookqa", "model": "t5-base", "seed": "3", "scale": "paper",
              "lr": "1e-4", "batch_size": 16.0, "epochs": "10", "train_fraction": "0.1", "kd_in": True}
    cfg = RunConfig.from_params(**params)
    assert (cfg.seed, cfg.lr, cfg.batch_size, cfg.epochs, cfg.train_fraction) == (3, 1e-4, 16, 10, 0.1)
    assert cfg.flags["kd_in"] is True
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.run_id == cfg.run_id


@pytest.mark.parametrize("bad", [{"scale": "huge"}, {"lr": "fast"}, {"batch_size": 0}, {"seed": 1.5},
                                 {"optimizer": "sgd"}, {"train_fraction": 0}, {"epochs": True}])
def test_bad_parameters_name_the_parameter(bad):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_params(**bad)
    assert list(bad)[0] in str(e.value)


def test_run_id_is_stable_and_identifying():
    cfg = RunConfig(method="ft_io", dataset="strategyqa", model="google/flan-t5-base", seed=1)
    out = subprocess.run([sys.executable, "-c", "from knife_repro.core import RunConfig;"
                          "print(RunConfig(method='ft_io', dataset='strategyqa', model='google/flan-t5-base', seed=1).run_id)"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == cfg.run_id                         # same in another process
    assert cfg.run_id.startswith("ft_io-strategyqa-flan-t5-base-smoke-s1-")
    assert cfg.replace(lr=1e-3).run_id != cfg.run_id
    assert cfg.replace(flags={"x": 1}).run_id != cfg.run_id
    assert cfg.replace(output_dir="/elsewhere").run_id == cfg.run_id


def test_data_root_error_names_all_three_places(tmp_path, monkeypatch):
    empty = tmp_path / "env_data"; empty.mkdir()
    monkeypatch.setenv("KNIFE_REPRO_DATA", str(empty))
    monkeypatch.setattr(core, "PROJECT_ROOT", tmp_path / "proj")   # no data/, no ../shared/data
    with pytest.raises(DataNotFoundError) as e:
        core.data_root("strategyqa")
    msg = str(e.value)
    assert str(empty) in msg and str(tmp_path / "proj" / "data") in msg and str(tmp_path / "shared" / "data") in msg
    monkeypatch.delenv("KNIFE_REPRO_DATA")
    with pytest.raises(DataNotFoundError, match=r"KNIFE_REPRO_DATA \(not set\)"):
        core.data_root("strategyqa")


def test_data_root_order(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    for d in (tmp_path / "env" / "medqa", proj / "data" / "medqa", tmp_path / "shared" / "data" / "medqa",
              tmp_path / "shared" / "data" / "spider"):
        d.mkdir(parents=True)
    monkeypatch.setattr(core, "PROJECT_ROOT", proj)
    monkeypatch.setenv("KNIFE_REPRO_DATA", str(tmp_path / "env"))
    assert core.data_root("medqa") == (tmp_path / "env").resolve()
    assert core.data_root("spider") == (tmp_path / "shared" / "data").resolve()  # env and data/ lack it
    monkeypatch.delenv("KNIFE_REPRO_DATA")
    assert core.data_root("medqa") == proj / "data"


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "other_folders"])
def test_data_root_env_set_but_unusable_raises(tmp_path, monkeypatch, kind):
    # project data/ holds strategyqa, so a silent fallback would succeed: the error must win
    proj = tmp_path / "proj"; (proj / "data" / "strategyqa").mkdir(parents=True)
    monkeypatch.setattr(core, "PROJECT_ROOT", proj)
    env = tmp_path / "env"
    if kind == "file": env.write_text("")
    if kind == "empty": env.mkdir()
    if kind == "other_folders": (env / "not_a_dataset").mkdir(parents=True)
    monkeypatch.setenv("KNIFE_REPRO_DATA", str(env))
    for ds in ("strategyqa", None):
        with pytest.raises(DataNotFoundError) as e:
            core.data_root(ds)
        msg = str(e.value)
        assert msg.startswith(f"KNIFE_REPRO_DATA is set to {env}, which "), msg
        assert {"missing": "does not exist", "file": "is not a folder"}.get(kind, "holds none of") in msg
        assert str(proj / "data") in msg                           # says where unsetting it would look
    monkeypatch.delenv("KNIFE_REPRO_DATA")
    assert core.data_root("strategyqa") == proj / "data"


def test_run_record_written_and_found(tmp_path):
    cfg = RunConfig(method="demo", output_dir=str(tmp_path))
    assert core.find_run(cfg) is None
    path = core.write_run_record(cfg, {"accuracy": 0.75}, timings={"train_s": 1.5})
    rec = core.find_run(cfg)
    assert path.name == f"{cfg.run_id}.json" and rec["metrics"]["accuracy"] == 0.75
    assert rec["config"] == cfg.to_dict() and rec["versions"]["torch"] and "commit" in rec["git"]
    assert rec["per_seed"] == {"0": {"accuracy": 0.75}}


SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from knife_repro.core import RunConfig, write_run_record
    class Slow:
        def __str__(self):
            time.sleep(0.05); return "x" * 1000
    cfg = RunConfig(method="demo", output_dir=sys.argv[1])
    print("writing", flush=True)
    write_run_record(cfg, {"accuracy": 0.1, "blobs": [Slow() for _ in range(400)]})
""")


def test_killed_write_leaves_no_partial_record(tmp_path):
    cfg = RunConfig(method="demo", output_dir=str(tmp_path))
    core.write_run_record(cfg, {"accuracy": 0.9})                    # an earlier, complete record
    p = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    runs = tmp_path / "runs"
    deadline = time.time() + 30
    while not any(f.suffix == ".tmp" for f in runs.iterdir()):    # the writer is mid-write
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    records = list(runs.glob("*.json"))
    assert [r.name for r in records] == [f"{cfg.run_id}.json"]
    assert json.loads(records[0].read_text())["metrics"] == {"accuracy": 0.9}   # the old record is intact


def test_run_lock_makes_a_second_process_wait(tmp_path):
    "A process holding the lock of a run delays another process that asks for the same run, not one for another run."
    import subprocess, sys, time
    from knife_repro.core import run_lock
    cfg = RunConfig(method="ft", output_dir=str(tmp_path))
    done = tmp_path / "holder_done"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time, pathlib; from knife_repro.core import RunConfig, run_lock\n"
        f"cfg = RunConfig(method='ft', output_dir={str(tmp_path)!r})\n"
        "with run_lock(cfg):\n"
        f"    pathlib.Path({str(tmp_path / 'holder_in')!r}).touch(); time.sleep(2)\n"
        f"    pathlib.Path({str(done)!r}).touch()\n")])
    t0 = time.time()
    while not (tmp_path / "holder_in").exists():
        assert time.time() - t0 < 60 and holder.poll() is None
        time.sleep(0.05)
    with run_lock(cfg.replace(seed=1)):          # another run: not blocked
        assert not done.exists()
    with run_lock(cfg):                          # the same run: only after the holder released it
        assert done.exists()
    assert holder.wait(30) == 0
