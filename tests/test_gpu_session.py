"""scripts/gpu_session.sh, the one-command device measurement, run for real at tiny size on a clone."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT



@pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None, reason="needs git and bash")
def test_session_runs_asv_saves_results_and_checks_thresholds(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # the script's python3: this one
    (shim / "python3").chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "WHEELS": str(tmp_path / "no-wheels"), "HOME": str(tmp_path),
           "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}", "VIRNUCPRO_BENCH_PROFILE": "tiny",
           "VIRNUCPRO_BENCH_DATA": str(tmp_path / "data"),
           "RESULTS_DIR": "cpu-results"}  # results/ is the GPU hosts' history: refused on a CPU host
    sha = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    proc = subprocess.run(["bash", "scripts/gpu_session.sh", "sessiontest", "500", f"{sha}:TrackTranslate"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"asv {sha}:TrackTranslate rc=0" in proc.stdout
    assert "check_thresholds rc=0" in proc.stdout  # GPU rows not measured on a CPU host: not a failure
    with tarfile.open(out / "results.tgz") as tar:
        names = tar.getnames()
        saved = [n for n in names if n.startswith("cpu-results/sessiontest/") and n.endswith(".json")
                 and not n.endswith("machine.json")]
        assert len(saved) == 1 and Path(saved[0]).name.startswith(sha[:8])
        data = json.load(tar.extractfile(saved[0]))
    value = data["results"]["bench_stages.TrackTranslate.track_translate_mbp_per_second"][0]
    assert value[0] > 0  # Mbp/s, measured
    assert json.loads((out / "thresholds.json").read_text())["machine"] == "sessiontest"


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None, reason="needs git and bash")
def test_items_go_to_their_own_folders_and_are_not_run_twice(tmp_path):
    """SHA:BENCH@DIR puts one run in a folder of its own (a repeated run for noise_table.py); a
    parameter set is chosen by asv's regex; an item already done is skipped when the list comes again."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (shim / "python3").chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "WHEELS": str(tmp_path / "no-wheels"), "HOME": str(tmp_path),
           "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}", "VIRNUCPRO_BENCH_PROFILE": "tiny",
           "VIRNUCPRO_BENCH_DATA": str(tmp_path / "data"), "RESULTS_DIR": "cpu-results"}
    sha = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    items = [f"{sha}:TrackTranslate@runs/r1", f"{sha}:TrackTranslate@runs/r2",
             f"{sha}:track_throughput\\('merge', 1\\)@runs/r1"]
    first = subprocess.run(["bash", "scripts/gpu_session.sh", "sessiontest", "500", *items], cwd=clone, env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count(" rc=0 at ") == 3
    for run in ("r1", "r2"):
        (saved,) = (clone / "runs" / run / "sessiontest").glob(f"{sha[:8]}-*.json")
        results = json.loads(saved.read_text())["results"]
        assert results["bench_stages.TrackTranslate.track_translate_mbp_per_second"][0][0] > 0
    r1 = json.loads(next((clone / "runs" / "r1" / "sessiontest").glob(f"{sha[:8]}-*.json")).read_text())["results"]
    columns = r1["bench_stages.TrackThroughput.track_throughput"][0]  # the first column: values
    assert sum(1 for v in columns if v is not None and v == v) == 1  # only ('merge', 1) was run
    again = subprocess.run(["bash", "scripts/gpu_session.sh", "sessiontest", "500", *items], cwd=clone, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("done before") == 3, again.stdout
    with tarfile.open(out / "results.tgz") as tar:
        assert {"runs/r1", "runs/r2"} <= {n.rstrip("/") for n in tar.getnames()}
