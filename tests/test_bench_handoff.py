"""The hand-off inside one `asv run` on the CPU: time_predict's 1-process run is what
track_predicted_speedup replays, with no second run of the workload."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from benchmarks import common
from suite.asvrun import asv_config
from virnucpro import trace


def _asv(conf, *args, env):
    done = subprocess.run([sys.executable, "-m", "asv", "--config", str(conf), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_time_predict_hands_its_run_to_track_predicted_speedup(tmp_path):
    pytest.importorskip("asv")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout: asv needs a commit to file results under")
    marks = tmp_path / "trace.txt"
    env = {**os.environ, "HOME": str(tmp_path), "VIRNUCPRO_BENCH_DATA": str(common.data_root()),
           "VIRNUCPRO_BENCH_PROFILE": "tiny", "VIRNUCPRO_TRACE": str(marks)}
    conf = asv_config(tmp_path / "results", into=tmp_path)
    _asv(conf, "machine", "--yes", "--machine", "handoff", env=env)
    _asv(conf, "run", "-E", f"existing:{sys.executable}", "--bench", "TimePredict|TrackPredictedSpeedup",
         "--quick", "--set-commit-hash", head.stdout.strip(), "--machine", "handoff", env=env)

    from asv.results import Results

    [path] = [p for p in (tmp_path / "results" / "handoff").glob("*.json") if p.name != "machine.json"]
    res = Results.load(str(path))
    predicted = dict(zip(["2", "4", "8"], res.get_result_value(
        "bench_predict.TrackPredictedSpeedup.track_predicted_speedup", [["2", "4", "8"]])))
    assert all(v is not None and 0 < v <= int(n) for n, v in predicted.items()), predicted
    assert res.get_result_value("bench_predict.TimePredict.time_predict", [["1"], ["True"]])[0] > 0

    by_pid: dict = {}
    for m in trace.read(marks):
        by_pid.setdefault(m.pid, []).append(m)
    stem = Path(common.workload()["predict_files"][0]).stem
    scored = [p for p, ms in by_pid.items() if any(m.name == "range_saved" and m.detail.endswith(f" {stem}")
                                                   for m in ms)]
    # time_predict's two runs (persistent models and not); a third would be the replay's own run
    assert len(scored) == 2, scored
