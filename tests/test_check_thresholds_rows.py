"""scripts/check_thresholds.py: which commit it reads, the rows it shows beyond the gate, its
outputs, and one real asv run."""
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_check_thresholds import (BASE_RATE, C1, C2, C3, GOOD, MACHINE, SCRIPT, SUITE, THRESHOLDS, args, check, ct,
                                   scaled, status, write_run)



def git(repo, *argv):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_default_commit_is_newest_on_main(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    commits = []
    for i in range(3):
        git(tmp_path, "commit", "-q", "--allow-empty", "-m", f"c{i}")
        commits.append(git(tmp_path, "rev-parse", "HEAD"))
    git(tmp_path, "checkout", "-q", "-b", "side")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "side")
    side = git(tmp_path, "rev-parse", "HEAD")
    results = tmp_path / "results"
    write_run(results, commits[0], date=1)
    write_run(results, commits[1], date=2, time_predict=lambda n, p: 100.0)  # no speedup: fails
    write_run(results, side, date=3)  # newest by date, but not on main

    code, report = check(tmp_path)
    assert report["commit"] == commits[1] and code == 1
    code, report = check(tmp_path, "--commit", "main~1")
    assert report["commit"] == commits[1]
    code, report = check(tmp_path, "--commit", commits[0][:10])
    assert report["commit"] == commits[0] and code == 0


def test_without_git_the_newest_date_wins(tmp_path):
    write_run(tmp_path / "results", C1, date=2_000)
    write_run(tmp_path / "results", C2, date=1_000)
    code, report = check(tmp_path)
    assert report["commit"] == C1
    assert any("newest by commit date" in n for n in report["notes"])


def test_regressions_know_which_way_is_better(tmp_path):
    write_run(tmp_path / "results", C1)
    write_run(tmp_path / "results", C2,
              time_predict=lambda n, p: GOOD["time_predict"](n, p) * 0.5,  # twice as fast: fine
              track_throughput=lambda s, n: BASE_RATE[s] * scaled(n) * (0.8 if s == "merge" else 1.0))
    code, report = check(tmp_path, "--commit", C2, "--baseline", C1, "--max-regression", "0.1")
    assert code == 1
    rows = {r["metric"]: r for r in report["rows"] if r["check"] == "regression"}
    assert rows["track_throughput(stage=merge, n_gpus=4)"]["status"] == "FAIL"
    assert rows["track_throughput(stage=merge, n_gpus=4)"]["value"] == pytest.approx(-0.2)
    assert rows["track_throughput(stage=esm2, n_gpus=4)"]["status"] == "pass"
    assert rows["time_predict(n_gpus=2, persistent_models=True)"]["status"] == "pass"
    assert report["baseline"] == C1

    # the other way round the time doubles (a regression) and throughput rises (fine)
    code, report = check(tmp_path, "--commit", C1, "--baseline", C2, "--max-regression", "0.3")
    rows = {r["metric"]: r for r in report["rows"] if r["check"] == "regression"}
    assert rows["time_predict(n_gpus=2, persistent_models=True)"]["status"] == "FAIL"
    assert rows["track_throughput(stage=merge, n_gpus=4)"]["status"] == "pass"
    assert code == 1


def test_markdown_json_and_plot_are_written(tmp_path):
    write_run(tmp_path / "results", C1,
              track_throughput=lambda s, n: BASE_RATE[s] * scaled(n) / (10 if s == "esm2" else 1),
              track_gpu_utilization=lambda s, n: 50.0 if s == "dnabert" else 90.0)
    md, png = tmp_path / "out.md", tmp_path / "out.png"
    code, report = check(tmp_path, "--markdown", str(md), "--plot", str(png))
    assert code == 1  # dnabert at 50 %
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| metric | value | threshold | status |" in md.read_text()
    shares = {b["stage"]: b for b in report["bottleneck"] if b["n_gpus"] == 1}
    assert sum(b["share"] for b in shares.values()) == pytest.approx(1.0)
    # esm2 at 10 items/s dominates: 0.1 s of the per-item total
    total = sum(1 / r for r in [5000, 400, 10, 3000, 8000])
    assert shares["esm2"]["share"] == pytest.approx(0.1 / total)
    assert shares["esm2"]["flags"] == ["over 30% of the time"]
    assert shares["dnabert"]["flags"] == ["GPU utilization under 80%"]
    assert shares["translate"]["flags"] == []


def test_several_environments_newest_run_wins(tmp_path):
    day = datetime.timedelta(days=1)
    newer = datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)
    write_run(tmp_path / "results", C1, env="existing-a", started=newer)
    write_run(tmp_path / "results", C1, env="existing-z", started=newer - day,
              track_gpu_utilization=lambda s, n: 10.0)
    assert len(list((tmp_path / "results" / MACHINE).glob("1111*.json"))) == 2
    code, report = check(tmp_path)
    assert code == 0 and status(report, "esm2 GPU utilization, n_gpus=1") == "pass"


NOTHING = {m: (lambda *p: math.nan) for m in GOOD}  # a host that can run none of it (no GPU)


def test_a_host_that_measured_nothing_says_so_and_exits_0(tmp_path):
    write_run(tmp_path / "results", C1, NOTHING)
    proc = subprocess.run([sys.executable, str(SCRIPT), *args(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("Result: nothing measured on this machine")
    assert "Result: pass" not in proc.stdout


def test_one_gpu_end_to_end_results_are_shown_not_called_nothing(tmp_path):
    """A run of bench_predict alone on one GPU measured time_predict and time_startup: the table
    shows them and the result says no threshold applied, instead of "nothing measured"."""
    one_gpu = {m: (lambda *p: math.nan) for m in GOOD}
    one_gpu["time_predict"] = lambda n, persistent: 101.5 if n == 1 else math.nan
    one_gpu["time_startup"] = lambda n: 2.25 if n == 1 else math.nan
    write_run(tmp_path / "results", C1, one_gpu)
    proc = subprocess.run([sys.executable, str(SCRIPT), *args(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| time_predict(n_gpus=1, persistent_models=True) | 101.50 s | - | measured |" in proc.stdout
    assert "| time_startup(n_gpus=1) | 2.25 s | - | measured |" in proc.stdout
    assert "nothing measured" not in proc.stdout
    assert proc.stdout.rstrip().endswith("Result: measured, but no threshold applies to what this machine can run")


def test_utilization_rows_show_the_nvml_sample_count_and_the_kernel_busy_share(tmp_path):
    write_run(tmp_path / "results", C1)
    code, report = check(tmp_path)
    row = next(r for r in report["rows"] if r["metric"] == "dnabert GPU utilization, n_gpus=1")
    assert code == 0 and row["status"] == "pass" and row["detail"] == "120 NVML samples; kernel busy 97.5% (profiler)"
    assert not any("track_nvml_samples" in n for n in report["notes"])


def test_required_but_unmeasured_rows_say_so_and_fail(tmp_path):
    write_run(tmp_path / "results", C1, NOTHING)
    proc = subprocess.run([sys.executable, str(SCRIPT), *args(tmp_path, "--require-gpus", "2")],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "| time_predict speedup (persistent models), n_gpus=2 | - | >= 1.8x | required, not measured |" \
        in proc.stdout
    assert "| esm2 GPU utilization, n_gpus=8 | - | >= 80% | not measured |" in proc.stdout
    assert proc.stdout.rstrip().endswith("Result: FAIL")


def _git_history(repo: Path, n: int) -> list:
    """n empty commits on branch main of a fresh repository, oldest first."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for i in range(n):
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", f"c{i}"], check=True, env=env)
    return subprocess.run(["git", "-C", str(repo), "rev-list", "--reverse", "main"], capture_output=True,
                          text=True, check=True).stdout.split()


def test_baseline_uses_the_history_between_with_step_detection(tmp_path):
    """Noise of +-7 % around one level is no regression, though the last point is 14 % below the
    baseline's; a lasting 20 % drop of throughput is one; a time that halves is an improvement."""
    commits = _git_history(tmp_path, 6)
    noise = [1.08, 0.94, 1.06, 0.95, 1.07, 0.93]
    drop = [1.0, 1.0, 1.0, 0.8, 0.8, 0.78]
    for i, c in enumerate(commits):
        write_run(tmp_path / "results", c, date=1_700_000_000_000 + i,
                  time_predict=lambda n, p, i=i: GOOD["time_predict"](n, p) * (0.5 if i >= 3 else 1.0),
                  track_throughput=lambda s, n, i=i: BASE_RATE[s] * scaled(n) * (drop if s == "merge" else noise)[i])
    code, report = check(tmp_path, "--commit", commits[-1], "--baseline", commits[0])
    rows = {r["metric"]: r for r in report["rows"] if r["check"] == "regression"}
    assert rows["track_throughput(stage=merge, n_gpus=1)"]["status"] == "FAIL"
    assert rows["track_throughput(stage=merge, n_gpus=1)"]["value"] == pytest.approx(-0.22)
    assert rows["track_throughput(stage=esm2, n_gpus=1)"]["status"] == "pass"
    assert rows["time_predict(n_gpus=1, persistent_models=True)"]["status"] == "pass"
    assert code == 1
    # from commit 3 on, the drop lies before the baseline: nothing regressed since
    code, report = check(tmp_path, "--commit", commits[-1], "--baseline", commits[3])
    assert all(r["status"] == "pass" for r in report["rows"] if r["check"] == "regression")


def test_plot_has_ideal_measured_and_amdahl_bound(tmp_path):
    write_run(tmp_path / "results", C1, time_startup=lambda n: 20.0)
    png = tmp_path / "speedup.png"
    code, report = check(tmp_path, "--plot", str(png))
    assert code == 0 and png.stat().st_size > 0
    # time_startup 20 s of time_predict 100 s on 1 GPU: s = 0.2, bound(8) = 1 / (0.2 + 0.8 / 8)
    assert report["amdahl"]["serial_fraction"] == pytest.approx(0.2)
    assert report["amdahl"]["bound"]["8"] == pytest.approx(1 / 0.3)
    text = ct.markdown(ct.check(ct.parse_args(args(tmp_path)))[1])
    assert "Amdahl bound on time_predict speedup (time_startup is 20.0% of time_predict on 1 GPU)" in text


def test_unmeasured_time_predict_speedups_show_the_replayed_prediction_never_as_a_value(tmp_path, monkeypatch):
    """A one-GPU host: track_predicted_speedup (the 1-GPU run replayed for 2, 4 and 8 ranks) goes
    beside each speedup row not measured, as a detail; the row stays "not measured", without value."""
    monkeypatch.setitem(SUITE, "track_predicted_speedup", (["n_gpus"], [[2, 4, 8]], "track"))
    one_gpu = {m: (lambda *p: math.nan) for m in GOOD}
    one_gpu["time_predict"] = lambda n, persistent: 101.5 if n == 1 else math.nan
    one_gpu["track_predicted_speedup"] = {2: 1.934, 4: 3.705, 8: 6.6}.get
    write_run(tmp_path / "results", C1, one_gpu)
    proc = subprocess.run([sys.executable, str(SCRIPT), *args(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = ct.load_thresholds(str(THRESHOLDS))
    for n, x, verdict in ((2, "1.93", "met"), (4, "3.71", "met"), (8, "6.60", "met")):
        assert (f"| time_predict speedup (persistent models), n_gpus={n} | - | >= {cfg['speedup'][n]:g}x "
                f"| not measured | predicted {x}x (replay of the 1-GPU run at 11111111); "
                f"design target >= {cfg['predicted_speedup'][n]:g}x: {verdict} |") in proc.stdout
    assert "| dnabert throughput scaling, n_gpus=2 | - | >= 1.8x | not measured |  |" in proc.stdout
    # a prediction short of the design target says so, and the run still passes: a prediction decides nothing
    write_run(tmp_path / "results", C3, dict(one_gpu, track_predicted_speedup={2: 1.95, 4: 3.6, 8: 6.1}.get))
    code, report = check(tmp_path, "--commit", C3)
    details = {r["metric"]: r["detail"] for r in report["rows"] if r["metric"].startswith("time_predict speedup")}
    assert code == 0 and [d.rsplit(": ", 1)[-1] for d in details.values()] == ["met", "missed", "missed"]
    # measured speedups carry no prediction
    write_run(tmp_path / "results", C2, dict(GOOD, track_predicted_speedup={2: 1.5, 4: 3.0, 8: 6.0}.get))
    code, report = check(tmp_path, "--commit", C2)
    assert code == 0 and all("predicted" not in r["detail"] for r in report["rows"])


def test_real_asv_run(tmp_path):
    """asv itself runs a tiny suite: NotImplementedError must read as not measured, an exception as failed."""
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "bench_gpu.py").write_text(
        "class Stages:\n"
        "    params = (['dnabert', 'esm2'], [1, 2, 4])\n"
        "    param_names = ['stage', 'n_gpus']\n"
        "    def setup(self, stage, n):\n"
        "        if n == 4:\n"
        "            raise NotImplementedError('needs more GPUs')\n"
        "    def track_throughput(self, stage, n):\n"
        "        if stage == 'esm2' and n == 2:\n"
        "            raise RuntimeError('out of memory')\n"
        "        return 100.0 * n\n"
        "    def track_gpu_utilization(self, stage, n):\n"
        "        return 85.0\n")
    (tmp_path / "asv.conf.json").write_text(json.dumps({
        "version": 1, "project": "t", "repo": ".", "branches": ["main"], "environment_type": "existing",
        "benchmark_dir": "benchmarks", "results_dir": "results", "html_dir": "html"}))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "suite")
    asv = [sys.executable, "-m", "asv"]
    env = dict(os.environ, HOME=str(tmp_path))  # asv keeps machine names in ~/.asv-machine.json
    for cmd, ok in ((["machine", "--yes", "--machine", MACHINE], {0}),
                    (["run", "--python=same", "--quick", "--machine", MACHINE,
                      "--set-commit-hash", git(tmp_path, "rev-parse", "HEAD")], {0, 2})):  # 2: a benchmark failed
        proc = subprocess.run(asv + cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode in ok, proc.stdout + proc.stderr
    raw = (tmp_path / "results" / MACHINE).glob("*-*.json").__next__().read_text()
    assert "NaN" in raw and "null" in raw  # skipped and failed, as the script expects them

    code, report = check(tmp_path)
    assert code == 1
    assert status(report, "dnabert throughput scaling, n_gpus=2") == "pass"
    assert status(report, "dnabert throughput scaling, n_gpus=4") == "not measured"
    assert status(report, "esm2 throughput scaling, n_gpus=2") == "failed run"
    assert status(report, "esm2 GPU utilization, n_gpus=2") == "pass"
    assert status(report, "esm2 GPU utilization, n_gpus=4") == "not measured"
    assert report["failed_runs"] == ["bench_gpu.Stages.track_throughput(stage=esm2, n_gpus=2)"]
