"""The site over a crafted history: regressions found each metric's way round with its own
threshold, every GPU host kind apart, this machine's results kept apart."""
import datetime
import itertools
import json
import math
import os
import subprocess
from pathlib import Path

import pytest

asv_results = pytest.importorskip("asv.results")
from asv import util as asv_util  # noqa: E402
from asv.runner import BenchmarkResult  # noqa: E402
from conftest import ROOT  # noqa: E402
from suite import results  # noqa: E402
from test_site import check_thresholds, publish  # noqa: E402


# A crafted history ------------------------------------------------------------------------------

GPU_MACHINE = {"machine": "gpubox", "gpu": "NVIDIA H200", "num_gpus": "1", "os": "Linux", "arch": "x86_64",
               "cpu": "16 cores", "num_cpu": "16", "ram": ""}
SUITE = {  # name -> (param names, param values, asv type, unit)
    "bench.Stages.track_throughput": (["stage", "n_gpus"], [["dnabert", "esm2"], [1, 2]], "track", "sequences/s"),
    "bench.Stages.track_mfu": (["stage", "n_gpus"], [["dnabert", "esm2"], [1, 2]], "track", "fraction"),
    "bench.Predict.time_predict": (["n_gpus", "persistent_models"], [[1, 2], [True, False]], "time", "seconds"),
    "bench.Stages.track_peak_gpu_memory": ([], [], "track", "bytes"),
}
N = 8
LEVEL = [1.0, 1.02, 0.99, 1.01, 1.0, 0.98, 1.01, 1.0]  # noise of 2 %


def step(at, factor):
    return [LEVEL[i] * (factor if i >= at else 1.0) for i in range(N)]


# Known steps, both ways, for each direction; n_gpus=2 is never measured (one GPU).
HISTORY = {
    ("bench.Stages.track_throughput", ("esm2", 1)): [100 * v for v in step(5, 0.7)],    # regression
    ("bench.Stages.track_throughput", ("dnabert", 1)): [400 * v for v in step(3, 1.5)],  # improvement
    ("bench.Stages.track_mfu", ("esm2", 1)): [0.5 * v for v in step(4, 1.3)],           # improvement
    ("bench.Stages.track_mfu", ("dnabert", 1)): [0.4 * v for v in step(2, 0.8)],        # regression
    ("bench.Predict.time_predict", (1, True)): [10 * v for v in step(4, 0.5)],          # improvement
    ("bench.Predict.time_predict", (1, False)): [20 * v for v in step(6, 1.4)],         # regression
    ("bench.Stages.track_peak_gpu_memory", ()): [1e9 * v for v in LEVEL],               # flat
}
REGRESSIONS = {("track_throughput", ("esm2", 1)), ("track_mfu", ("dnabert", 1)), ("time_predict", (1, False))}


def meta(name, version="v1"):
    names, values, kind, unit = SUITE[name]
    return {"name": name, "param_names": names, "params": [[repr(v) for v in vs] for vs in values],
            "type": kind, "unit": unit, "version": version}


def git_history(repo: Path, n: int) -> list:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for i in range(n):
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = f"2026-01-0{1 + i // 5}T0{i % 5}:00:00Z"
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", f"c{i}"], check=True, env=env)
    return subprocess.run(["git", "-C", str(repo), "rev-list", "--reverse", "main"], capture_output=True,
                          text=True, check=True).stdout.split()


def write_results(results: Path, machine: dict, commits: list, value, version="v1"):
    """value(name, params, i) for the i-th commit; NaN where nothing is measured."""
    asv_util.write_json(results / "benchmarks.json", {n: meta(n, version) for n in SUITE}, api_version=2)
    asv_util.write_json(results / machine["machine"] / "machine.json", machine, api_version=1)
    for i, commit in commits:
        run = asv_results.Results({**machine, "python": "3.11"}, {}, commit, 1_767_225_600_000 + i * 3_600_000,
                                  "3.11", "existing-py3.11", {})
        for name, (_, values, _, _) in SUITE.items():
            combos = list(itertools.product(*values)) or [()]
            result = [value(name, c, i) for c in combos]
            run.add_result(meta(name, version), BenchmarkResult(result, [None] * len(result), [None] * len(result), 0,
                                                                "", None),
                           started_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
        run.save(str(results))


def history_value(name, params, i):
    series = HISTORY.get((name, params))
    return series[i] if series else math.nan


def found_regressions(site: Path) -> set:
    index = json.loads((site / "index.json").read_text())
    found = set()
    for entry, _, _, j, _, _, jumps in json.loads((site / "regressions.json").read_text())["regressions"]:
        name = entry.split("(")[0]
        params = index["benchmarks"][name]["params"]
        values = () if j is None else next(itertools.islice(itertools.product(*params), j, None))
        found.add((name.rsplit(".", 1)[-1], tuple(results.decode(v) for v in values)))
    return found


@pytest.fixture
def crafted(tmp_path):
    commits = git_history(tmp_path / "repo", N)
    write_results(tmp_path / "results", GPU_MACHINE, list(enumerate(commits)), history_value)
    return tmp_path, commits


def thresholds_file(tmp_path, per_metric: str = "") -> Path:
    """The project's thresholds with the crafted history's own per-metric table (the project's is
    set from a real host's noise, which the crafted history does not have)."""
    text = (ROOT / "benchmarks" / "thresholds.toml").read_text().split("[regression.max_fraction_by_benchmark]")[0]
    path = tmp_path / "thresholds.toml"
    path.write_text(text + "\n[regression.max_fraction_by_benchmark]\n" + per_metric)
    return path


def test_regressions_are_found_each_metrics_way_round(crafted):
    tmp_path, commits = crafted
    thresholds = thresholds_file(tmp_path)
    code, site = publish(tmp_path, "--results", str(tmp_path / "results"), "--repo", str(tmp_path / "repo"),
                         "--local", str(tmp_path / "none"), "--thresholds", str(thresholds))
    assert code == 0
    assert found_regressions(site) == REGRESSIONS
    feed = (site / "regressions.xml").read_text()
    assert feed.count("<entry>") == len(REGRESSIONS)
    assert "track_throughput('esm2', 1)" in feed and "track_throughput('dnabert', 1)" not in feed
    assert "-30.0% bench.Stages.track_throughput('esm2', 1) (higher is better)" in feed
    # where the throughput fell: from the commit before the step (index 4) to the step (index 5)
    (regression,) = [r for r in json.loads((site / "regressions.json").read_text())["regressions"]
                     if r[0].startswith("bench.Stages.track_throughput('esm2'")]
    revisions = json.loads((site / "index.json").read_text())["revision_to_hash"]
    assert regression[6][0][:2] == [None, next(int(r) for r, h in revisions.items() if h == commits[5])]
    assert regression[6][0][2] == pytest.approx(100 * 0.98, rel=0.05)  # the level before
    assert regression[6][0][3] == pytest.approx(70, rel=0.05)  # the best after

    # check_thresholds --baseline over the same history fails exactly the same rows
    out = tmp_path / "report.json"
    code = check_thresholds.main(["--results-dir", str(tmp_path / "results"), "--machine", "gpubox",
                                  "--repo", str(tmp_path / "repo"), "--baseline", commits[0], "--commit", commits[-1],
                                  "--json", str(out), "--thresholds", str(thresholds)])
    assert code == 1
    failing = set()
    for row in json.loads(out.read_text())["rows"]:
        if row["check"] == "regression" and row["status"] == "FAIL":
            method, inside = row["metric"][:-1].split("(")
            failing.add((method, tuple(results.decode(kv.split("=")[1]) for kv in inside.split(", ") if kv)))
    assert failing == REGRESSIONS


def test_a_metric_s_own_threshold_decides_its_regressions_on_the_site(crafted):
    """The site takes each metric's threshold from [regression.max_fraction_by_benchmark], as
    check_thresholds and compare_commits do: a 30 % loss of a rate (43 % more time per item) under
    a 50 % threshold is none."""
    tmp_path, _ = crafted
    thresholds = thresholds_file(tmp_path, '"track_throughput(stage=\'esm2\')" = 0.50\n')
    code, site = publish(tmp_path, "--results", str(tmp_path / "results"), "--repo", str(tmp_path / "repo"),
                         "--local", str(tmp_path / "none"), "--thresholds", str(thresholds))
    assert code == 0
    assert found_regressions(site) == {r for r in REGRESSIONS if r != ("track_throughput", ("esm2", 1))}
    assert "track_throughput(stage=&#x27;esm2&#x27;) 50.0%" in (site / "about.html").read_text()


def test_every_gpu_host_kind_is_published_apart(crafted):
    """An h100-x1 history beside the H200's: both in the machine menu, each drawn from its own
    results only (CI checks every such folder too)."""
    tmp_path, commits = crafted
    h100 = {**GPU_MACHINE, "machine": "h100-x1", "gpu": "NVIDIA H100 80GB HBM3"}
    write_results(tmp_path / "results", h100, list(enumerate(commits))[-3:], lambda n, p, i: 1000.0 + i)
    code, site = publish(tmp_path, "--results", str(tmp_path / "results"), "--repo", str(tmp_path / "repo"),
                         "--local", str(tmp_path / "none"))
    assert code == 0
    index = json.loads((site / "index.json").read_text())
    assert {"gpubox", "h100-x1"} <= set(index["machines"])
    assert index["machines"]["h100-x1"]["gpu"] == "NVIDIA H100 80GB HBM3"
    per_machine = {}
    for path in (site / "graphs").rglob("bench.Stages.track_mfu.json"):
        machine = next((part for part in path.parts if part.startswith("machine-")), None)
        if machine is None:  # the list view's summary, not a machine's graph
            continue
        rows = [row if isinstance(row, list) else [row] for _, row in json.loads(path.read_text())]
        per_machine[machine] = {v for row in rows for v in row if isinstance(v, float) and v == v}
    assert set(per_machine) == {"machine-gpubox", "machine-h100-x1"}
    assert per_machine["machine-h100-x1"] <= {1000.0 + i for i in range(len(commits))}  # only its own values
    assert per_machine["machine-h100-x1"] and not per_machine["machine-gpubox"] & per_machine["machine-h100-x1"]


def test_this_machines_results_of_a_newer_suite_are_published(crafted):
    """Benchmark versions moved on since the history was measured: this machine's results, of the
    checkout's suite, are drawn; the older history is left undrawn (its versions differ), and the
    publish does not fail on a history with no current graph."""
    tmp_path, commits = crafted
    cpu = {**GPU_MACHINE, "machine": "laptop", "gpu": "none", "num_gpus": "0"}
    write_results(tmp_path / "local", cpu, [(N - 1, commits[-1])], lambda n, p, i: 5.0, version="v2")
    code, site = publish(tmp_path, "--results", str(tmp_path / "results"), "--repo", str(tmp_path / "repo"),
                         "--local", str(tmp_path / "local"))
    assert code == 0
    index = json.loads((site / "index.json").read_text())
    assert index["benchmarks"]["bench.Stages.track_mfu"]["version"] == "v2"
    drawn = {next(part for part in p.parts if part.startswith("machine-"))
             for p in (site / "graphs").rglob("bench.Stages.track_mfu.json") if "summary" not in p.parts}
    assert drawn == {"machine-laptop"}


def test_this_machine_is_kept_apart(crafted):
    tmp_path, commits = crafted
    cpu = {**GPU_MACHINE, "machine": "laptop", "gpu": "none", "num_gpus": "0", "cpu": "2 cores", "num_cpu": "2"}
    # a CPU's numbers at the newest commit: far below the GPU's, which must not end the grid's lines
    write_results(tmp_path / "local", cpu, [(N - 1, commits[-1])],
                  lambda name, params, i: history_value(name, params, i) / 50)
    # a developer machine's folder under results/ is not history either
    write_results(tmp_path / "results", {**cpu, "machine": "devbox"}, [(N - 1, commits[-1])], history_value)
    code, site = publish(tmp_path, "--results", str(tmp_path / "results"), "--repo", str(tmp_path / "repo"),
                         "--local", str(tmp_path / "local"))
    assert code == 0
    index = json.loads((site / "index.json").read_text())
    assert sorted(index["machines"]) == ["gpubox", "laptop"]
    assert index["virnucpro"]["local_machines"] == ["laptop"]
    # the grid's thumbnail of throughput ends at the GPU history's value, not the laptop's
    summary = json.loads((site / "graphs" / "summary" / "bench.Stages.track_throughput.json").read_text())
    assert summary[-1][1] == pytest.approx(math.sqrt(100 * 0.7 * 400 * 1.5), rel=0.05)
    # graphs of the laptop are there, to be picked
    assert any("machine-laptop" in str(p) for p in (site / "graphs").rglob("*.json"))
    # parameter values that have no data on the machines drawn are not drawn at first
    assert index["virnucpro"]["measured"]["bench.Stages.track_mfu"] == {"stage": ["'dnabert'", "'esm2'"],
                                                                        "n_gpus": ["1"]}
    # the list view has no rows for what was never measured (n_gpus=2 here)
    rows = [r for f in (site / "graphs").rglob("summary.json") for r in json.loads(f.read_text())]
    assert rows and all(r["last_value"] is not None for r in rows)
    assert not [r for r in rows if r["pretty_name"].endswith(", 2)")]
    assert "laptop (this machine" in (site / "about.html").read_text()
    assert "NVIDIA H200" in (site / "about.html").read_text()
    assert "virnucpro.default_machines(state.machine)" in (site / "graphdisplay.js").read_text()


def test_a_local_machine_named_like_the_history_is_refused(crafted, capsys):
    tmp_path, commits = crafted
    write_results(tmp_path / "local", GPU_MACHINE, [(N - 1, commits[-1])], history_value)
    code, site = publish(tmp_path, "--results", str(tmp_path / "results"), "--repo", str(tmp_path / "repo"),
                         "--local", str(tmp_path / "local"))
    assert code == 2
    assert "gpubox" in capsys.readouterr().err
    assert not site.exists()
