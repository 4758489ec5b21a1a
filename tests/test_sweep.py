"Sweeps: parsing, resume after SIGKILL, failures, submitit's local executor, dry run."
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from knife_repro.core import ConfigError
from knife_repro.sweep import excluded_points, load_sweep, plan, points, run_sweep


def tiny_notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    p = nbformat.v4.new_code_cell('x = 1\noutput_dir = ""\nseed = 0\nscale = "smoke"')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, str(path))
    return path


# each execution appends a line to runs-<x>-<seed>.log, then sleeps, then writes done-<x>-<seed>
BODY = ("import time\nfrom pathlib import Path\n"
        "with open(Path(output_dir, f'runs-{x}-{seed}.log'), 'a') as f: f.write('run\\n')\n"
        "time.sleep(1.0)\nPath(output_dir, f'done-{x}-{seed}').write_text('ok')")


def test_sweep_file_errors_name_the_file_and_key(tmp_path):
    nb = tiny_notebook(tmp_path / "t.ipynb", "pass")
    cases = {"grid: {x: 3}": "grid.x", "seeds: []": "seeds", "grid: {seed: [1]}": "set by the sweep",
             "colour: red": "unknown keys", "scale: huge": "scale"}
    for i, (extra, msg) in enumerate(cases.items()):
        f = tmp_path / f"s{i}.yaml"; f.write_text(f"notebook: {nb}\n{extra}\n")
        with pytest.raises(ConfigError, match=msg) as e:
            load_sweep(f)
        assert f.name in str(e.value)
    (tmp_path / "m.yaml").write_text("notebook: nbs/none.ipynb\n")
    with pytest.raises(ConfigError, match="not found"):
        load_sweep(tmp_path / "m.yaml")


def test_scale_overrides_and_stable_point_ids(tmp_path):
    nb = tiny_notebook(tmp_path / "t.ipynb", "pass")
    f = tmp_path / "s.yaml"
    f.write_text(f"notebook: {nb}\nseeds: [0, 1, 2]\ngrid: {{x: [1, 2], model: [t5-base]}}\nfixed: {{epochs: 3}}\n"
                 "scales: {smoke: {seeds: [0], grid: {model: [tiny-t5]}}}\n")
    smoke, paper = load_sweep(f, "smoke"), load_sweep(f, "paper")
    ps, pp = points(smoke, tmp_path), points(paper, tmp_path)
    assert len(ps) == 2 and len(pp) == 6
    assert {p["params"]["model"] for p in ps} == {"tiny-t5"} and all(p["params"]["epochs"] == 3 for p in ps)
    assert [p["id"] for p in points(smoke, tmp_path / "elsewhere")] == [p["id"] for p in ps]


def test_sigkill_then_rerun_finishes_and_loses_nothing(tmp_path):
    nb = tiny_notebook(tmp_path / "t.ipynb", BODY)
    f = tmp_path / "s.yaml"; f.write_text(f"notebook: {nb}\nseeds: [0, 1]\ngrid: {{x: [1, 2]}}\n")
    out = tmp_path / "out"; out.mkdir()
    cmd = [sys.executable, "-m", "knife_repro.sweep", str(f), "--output-dir", str(out)]
    p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status_dir = out / "sweeps" / "s"
    deadline = time.time() + 120
    while not (status_dir.is_dir() and list(status_dir.glob("*.json"))):
        assert time.time() < deadline and p.poll() is None, "no point finished"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL); p.wait()                 # the runner and its kernels
    first = {s.name for s in status_dir.glob("*.json")}
    assert 1 <= len(first) < 4
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    statuses = [json.loads(s.read_text()) for s in status_dir.glob("*.json")]
    assert len(statuses) == 4 and all(s["status"] == "ok" for s in statuses)
    assert len(list(out.glob("done-*"))) == 4
    for st in statuses:   # a point finished before the kill ran once; nothing finished ran twice
        x, seed = st["params"]["x"], st["params"]["seed"]
        n = (out / f"runs-{x}-{seed}.log").read_text().count("run")
        assert n == 1 or (n == 2 and f"{st['id']}.json" not in first)


def test_failed_point_is_recorded_and_retried(tmp_path):
    nb = tiny_notebook(tmp_path / "t.ipynb", "assert x != 2, 'two is bad'")
    f = tmp_path / "s.yaml"; f.write_text(f"notebook: {nb}\ngrid: {{x: [1, 2]}}\n")
    sw = load_sweep(f)
    res = run_sweep(sw, tmp_path, log=lambda *a: None)
    bad = [r for r in res if r["status"] == "failed"]
    assert len(bad) == 1 and "two is bad" in bad[0]["traceback"]
    assert [p["state"] for p in plan(sw, tmp_path)].count("failed") == 1


def test_submitit_local_executor(tmp_path):
    nb = tiny_notebook(tmp_path / "t.ipynb", "from pathlib import Path\nPath(output_dir, f'ok-{x}').write_text('1')")
    f = tmp_path / "s.yaml"; f.write_text(f"notebook: {nb}\ngrid: {{x: [1, 2]}}\n")
    res = run_sweep(load_sweep(f), tmp_path, executor="submitit-local", log=lambda *a: None)
    assert sorted(r["status"] for r in res) == ["ok", "ok"] and len(list(tmp_path.glob("ok-*"))) == 2


def test_dry_run_lists_points_and_cost(tmp_path):
    nb = tiny_notebook(tmp_path / "t.ipynb", "pass")
    f = tmp_path / "s.yaml"; f.write_text(f"notebook: {nb}\ngrid: {{x: [1, 2, 3]}}\ncost_s: {{smoke: 60}}\n")
    lines = []
    pl = run_sweep(load_sweep(f), tmp_path, dry_run=True, log=lines.append)
    assert len(pl) == 3 and "3 to run" in lines[-1] and "~3.0 min" in lines[-1]
    assert not (tmp_path / "sweeps").exists()                 # nothing ran


def test_exclude_removes_points_and_keeps_the_reason(tmp_path):
    nb = tiny_notebook(tmp_path / "t.ipynb", "pass")
    f = tmp_path / "s.yaml"
    f.write_text(f"notebook: {nb}\nseeds: [0, 1]\ngrid: {{x: [1, 2], y: [a, b]}}\n"
                 "exclude: [{x: 2, y: b, reason: not runnable}]\n"
                 "scales: {paper: {exclude: [{x: 1, seed: 1, reason: paper only}]}}\n")
    smoke, paper = load_sweep(f, "smoke"), load_sweep(f, "paper")
    assert len(points(smoke, tmp_path)) == 6 and len(points(paper, tmp_path)) == 4
    ex = excluded_points(smoke, tmp_path)
    assert [(p["params"]["x"], p["params"]["y"], p["params"]["seed"], p["excluded"]) for p in ex] == \
        [(2, "b", 0, "not runnable"), (2, "b", 1, "not runnable")]
    assert {p["excluded"] for p in excluded_points(paper, tmp_path)} == {"not runnable", "paper only"}
    kept = {p["id"] for p in points(smoke, tmp_path)}                # ids do not move when a point is excluded
    f2 = tmp_path / "s2.yaml"; f2.write_text(f"notebook: {nb}\nseeds: [0, 1]\ngrid: {{x: [1, 2], y: [a, b]}}\n")
    assert kept < {p["id"] for p in points(load_sweep(f2, "smoke"), tmp_path)}
    lines = []
    run_sweep(smoke, tmp_path, dry_run=True, log=lines.append)
    assert "2 excluded" in lines[-1] and sum("not runnable" in l for l in lines) == 2
    for bad, msg in [("[{x: 2}]", "reason"), ("[{reason: r}]", "names no parameter"), ("[{z: 1, reason: r}]", "z")]:
        f.write_text(f"notebook: {nb}\ngrid: {{x: [1]}}\nexclude: {bad}\n")
        with pytest.raises(ConfigError, match=msg):
            load_sweep(f)


def test_every_parameters_cell_parses_for_papermill():
    "papermill drops a parameter line it cannot parse (e.g. '=' in its comment) from what it knows of the notebook."
    import re
    from papermill.translators import PythonTranslator
    nbs = sorted((Path(__file__).resolve().parents[1] / "nbs").glob("*.ipynb"))
    assert nbs
    for f in nbs:
        cells = [c for c in json.loads(f.read_text())["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(cells) == 1, f"{f.name}: {len(cells)} parameters cells"
        src = "".join(cells[0]["source"])
        names = [m.group(1) for m in re.finditer(r"^(\w+)\s*=", src, re.M)]
        assert [p.name for p in PythonTranslator.inspect({"source": src})] == names, f.name


# writes one run record through core (as every method notebook does), or reuses it when it exists
RECORD_BODY = ("from knife_repro.core import RunConfig, find_run, write_run_record\n"
               "from pathlib import Path\n"
               "cfg = RunConfig(method='demo', dataset=f'd{x}', seed=seed, output_dir=output_dir)\n"
               "if find_run(cfg) is None:\n"
               "    write_run_record(cfg, {'x': x})\n"
               "    with open(Path(output_dir, f'trained-{x}.log'), 'a') as f: f.write('run\\n')\n"
               "import tempfile\n"                                   # a demo record outside output_dir: not listed
               "with tempfile.TemporaryDirectory() as d: write_run_record(RunConfig(method='demo', output_dir=d), {})")


def test_point_whose_records_are_gone_runs_again(tmp_path):
    nb = tiny_notebook(tmp_path / "t.ipynb", RECORD_BODY)
    f = tmp_path / "s.yaml"; f.write_text(f"notebook: {nb}\ngrid: {{x: [1, 2]}}\n")
    out = tmp_path / "out"
    sw = load_sweep(f)
    res = run_sweep(sw, out, log=lambda *a: None)
    assert sorted(r["status"] for r in res) == ["ok", "ok"]
    recs = sorted(p.relative_to(out).as_posix() for p in (out / "runs").glob("*.json"))
    assert len(recs) == 2 and sorted(r for st in res for r in st["records"]) == recs   # each lists its own one
    assert all(len(st["records"]) == 1 for st in res)
    assert [p["state"] for p in plan(sw, out)] == ["done", "done"]
    assert run_sweep(sw, out, log=lambda *a: None) == []               # nothing to run

    (out / res[0]["records"][0]).unlink()                               # one record gone: that point only
    gone = res[0]["params"]["x"]
    assert {p["params"]["x"]: p["state"] for p in plan(sw, out)} == {gone: "stale", 3 - gone: "done"}
    lines = []
    run_sweep(sw, out, dry_run=True, log=lines.append)
    assert "1 done, 1 to run" in lines[-1]
    (st,) = run_sweep(sw, out, log=lambda *a: None)                     # only that point runs
    assert st["params"]["x"] == gone and st["status"] == "ok" and (out / st["records"][0]).is_file()

    shutil.rmtree(out / "runs")                                         # what `make clean` does
    assert [p["state"] for p in plan(sw, out)] == ["stale", "stale"]
    again = run_sweep(sw, out, log=lambda *a: None)
    assert sorted(r["status"] for r in again) == ["ok", "ok"] and len(list((out / "runs").glob("*.json"))) == 2
    assert (out / f"trained-{gone}.log").read_text().count("run") == 3  # trained, re-trained twice
    assert (out / f"trained-{3 - gone}.log").read_text().count("run") == 2
    assert [p["state"] for p in plan(sw, out)] == ["done", "done"]


def test_point_reusing_a_record_lists_it(tmp_path):
    "A record written by another sweep's point and found by this one (find_run) counts as this point's too."
    nb = tiny_notebook(tmp_path / "t.ipynb", RECORD_BODY)
    out = tmp_path / "out"
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(f"notebook: {nb}\ngrid: {{x: [1]}}\n")
    a = run_sweep(load_sweep(tmp_path / "a.yaml"), out, log=lambda *a: None)
    b = run_sweep(load_sweep(tmp_path / "b.yaml"), out, log=lambda *a: None)
    assert (out / "trained-1.log").read_text().count("run") == 1        # b reused a's record
    assert a[0]["records"] == b[0]["records"] and len(b[0]["records"]) == 1
    shutil.rmtree(out / "runs")
    assert plan(load_sweep(tmp_path / "b.yaml"), out)[0]["state"] == "stale"


def test_status_without_records_list_is_stale(tmp_path):
    "A status from before statuses listed their records says nothing of what it produced: run it again."
    nb = tiny_notebook(tmp_path / "t.ipynb", "pass")
    f = tmp_path / "s.yaml"; f.write_text(f"notebook: {nb}\ngrid: {{x: [1]}}\n")
    sw = load_sweep(f)
    (st,) = run_sweep(sw, tmp_path, log=lambda *a: None)
    assert st["records"] == [] and plan(sw, tmp_path)[0]["state"] == "done"   # wrote none: done
    p = tmp_path / "sweeps" / "s" / f"{st['id']}.json"
    p.write_text(json.dumps({k: v for k, v in st.items() if k != "records"}))
    assert plan(sw, tmp_path)[0]["state"] == "stale"


def test_cli_point_is_stale_when_its_preset_changed(tmp_path):
    "cli runner: done means the record of the config as resolved *now* exists; an ok status listing an older record is stale."
    from knife_repro.sweep import cli_args, load_sweep, plan, status_path
    from knife_repro.train import config_from_args
    f = tmp_path / "s.yaml"
    f.write_text("notebook: nbs/03_baselines.ipynb\nscale: smoke\ngrid: {method: [ft_io], dataset: [openbookqa]}\n")
    sw, out = load_sweep(f), tmp_path / "out"
    (pt,) = plan(sw, out, runner="cli")
    assert pt["state"] == "pending"
    old = out / "runs" / "ft_io-openbookqa-tiny-t5-smoke-s0-0123456789ab.json"   # what the point wrote under an older preset
    old.parent.mkdir(parents=True); old.write_text("{}")
    p = status_path(sw, pt, out); p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"id": pt["id"], "params": pt["params"], "status": "ok", "records": [old.relative_to(out).as_posix()]}))
    assert plan(sw, out)[0]["state"] == "done"                       # the notebook runner trusts its status file
    assert plan(sw, out, runner="cli")[0]["state"] == "stale"        # the cli runner re-runs it under the current preset
    cfg = config_from_args(["--set", *cli_args(pt["params"])])[0]
    (out / "runs" / f"{cfg.run_id}.json").write_text("{}")
    assert plan(sw, out, runner="cli")[0]["state"] == "done"
