"""scripts/publish_site.py: an offline site of the committed GPU history, this machine apart, and
regressions that know which way is better, found by asv's step detection (as check_thresholds)."""
import datetime
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

asv_results = pytest.importorskip("asv.results")
from asv import util as asv_util  # noqa: E402
from asv.runner import BenchmarkResult  # noqa: E402
from conftest import ROOT

SCRIPTS = ROOT / "scripts"


def load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


publish_site = load("publish_site")
check_thresholds = load("check_thresholds")
run_history = load("run_history")
from suite import results  # noqa: E402

# What a page loads by itself, as opposed to a link a reader may follow.
LOADS = {"script": ["src"], "img": ["src"], "iframe": ["src"], "embed": ["src"], "source": ["src", "srcset"],
         "audio": ["src"], "video": ["src", "poster"], "track": ["src"], "object": ["data"], "input": ["src"]}
LINK_LOADS = {"stylesheet", "icon", "shortcut", "preload", "modulepreload", "prefetch", "manifest"}
REMOTE = re.compile(r"^\s*(https?:)?//", re.I)


class Loads(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        names = LOADS.get(tag, [])
        if tag == "link" and LINK_LOADS & set((attrs.get("rel") or "").lower().split()):
            names = ["href"]
        self.refs += [attrs[n] for n in names if attrs.get(n)]
        self.refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", attrs.get("style") or "")


def loaded_references(site: Path) -> dict:
    """{file: [references it loads]} of every page and stylesheet of a published site."""
    found = {}
    for page in site.rglob("*.html"):
        parser = Loads()
        parser.feed(page.read_text())
        found[page] = parser.refs
    for sheet in site.rglob("*.css"):
        text = sheet.read_text()
        found[sheet] = re.findall(r"url\(\s*['\"]?([^'\")]+)", text) + re.findall(r"@import\s+['\"]([^'\"]+)", text)
    return found


def publish(tmp_path, *extra):
    site = tmp_path / "html"
    code = publish_site.main(["--html", str(site), "--work", str(tmp_path / "work"), *extra])
    return code, site


def test_published_committed_history_loads_nothing_from_the_network(tmp_path):
    code, site = publish(tmp_path, "--local", str(tmp_path / "no-local-results"))
    assert code == 0
    refs = loaded_references(site)
    remote = {str(f.relative_to(site)): r for f, rs in refs.items() for r in rs if REMOTE.match(r)}
    assert remote == {}
    local = {(f, r.split("?")[0].split("#")[0]) for f, rs in refs.items() for r in rs if not REMOTE.match(r)}
    assert not [(str(f), r) for f, r in local if not (f.parent / r).is_file()], "a page loads a file that is not there"
    index = [r for r in refs[site / "index.html"]]
    assert "vendor/jquery-3.3.1.min.js" in index and "vendor/jquery.flot.min.js" in index
    assert "virnucpro.js" in index
    assert 'href="about.html"' in (site / "index.html").read_text()
    about = (site / "about.html").read_text()
    assert 'href="thresholds.toml"' in about and "scripts/run_history.py" in about and "h200-x1" in about
    assert (site / "thresholds.toml").read_text() == (ROOT / "benchmarks" / "thresholds.toml").read_text()
    # the committed history's improvements (MFU 0.57 -> 0.70 and the like) are not regressions: each
    # step listed is worse in its metric's own direction, read back from the committed raw values
    from suite import directions
    cfg = publish_site.tomllib.loads((ROOT / "benchmarks" / "thresholds.toml").read_text())
    suite = json.loads((ROOT / "results" / "benchmarks.json").read_text())
    committed = {}
    for f in (ROOT / "results").glob("*/*-*.json"):
        for bench, res in json.loads(f.read_text())["results"].items():
            committed.setdefault(bench, []).extend(v for v in res[0] or [] if isinstance(v, (int, float)))
    for name, _, _, _, _, _, steps in json.loads((site / "regressions.json").read_text())["regressions"]:
        bench = name.split("(")[0]
        higher = directions.direction(bench, suite[bench]["type"], cfg, suite[bench].get("unit")) == directions.HIGHER
        for *_, before, after in steps:  # asv is handed a higher-is-better metric as time per item
            raw_before, raw_after = (1 / before, 1 / after) if higher else (before, after)
            assert (raw_after < raw_before) if higher else (raw_after > raw_before), (name, raw_before, raw_after)
            assert any(math.isclose(raw_after, v, rel_tol=1e-9) for v in committed[bench]), (name, raw_after)

    # each JSON file the pages fetch has its twin script, for a page opened as a file (file://)
    for path in site.rglob("*.json"):
        script = path.with_name(path.name + ".js").read_text()
        assert script.startswith("virnucpro.loaded(") and script.endswith(");\n")
        assert json.loads(script[len("virnucpro.loaded("):-len(");\n")]) == json.loads(path.read_text())

    # publishing again gives the same site
    # (but for info.json and its script: asv stamps it with the time of publishing, against stale caches)
    before = {p: p.read_bytes() for p in site.rglob("*")
              if p.is_file() and p.suffix in (".html", ".js") and p.name != "info.json.js"}
    code, _ = publish(tmp_path, "--local", str(tmp_path / "no-local-results"))
    assert code == 0
    assert {p: p.read_bytes() for p in before} == before


def test_a_different_asv_is_refused_not_published_half_working(tmp_path):
    """The site's changes to asv's scripts are text replacements: a newer asv must fail clearly."""
    www = Path(asv_results.__file__).parent / "www"
    shutil.copytree(www, tmp_path / "site")
    publish_site.patch(tmp_path / "site")
    publish_site.patch(tmp_path / "site")  # patched already: nothing to do
    assert (tmp_path / "site" / "asv.js").read_text().count("virnucpro.ajax({") == 3

    # a text to change that is not there
    shutil.copytree(www, tmp_path / "changed")
    asv_js = tmp_path / "changed" / "asv.js"
    asv_js.write_text(asv_js.read_text().replace('url: "info.json"', 'url: "info.json?v=2"'))
    with pytest.raises(publish_site.PublishError, match="asv.js: asv's text to change was not found once"):
        publish_site.patch(tmp_path / "changed")

    # a new way of fetching data that would not load on a file:// page
    shutil.copytree(www, tmp_path / "more")
    grid = tmp_path / "more" / "summarygrid.js"
    grid.write_text(grid.read_text() + '\n$.getJSON("more.json", function () {});\n')
    with pytest.raises(publish_site.PublishError, match=r"summarygrid.js: \$.getJSON\("):
        publish_site.patch(tmp_path / "more")


def test_raw_asv_publish_would_load_from_cdns(tmp_path):
    """The check above can fail: asv's own pages load their libraries from CDNs."""
    subprocess.run([sys.executable, "-m", "asv", "publish", "--html-dir", str(tmp_path / "raw")], cwd=ROOT,
                   check=True, capture_output=True)
    refs = loaded_references(tmp_path / "raw")
    assert [r for r in refs[tmp_path / "raw" / "index.html"] if REMOTE.match(r)]


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


def test_run_history_keeps_a_host_without_gpu_out_of_results(monkeypatch, capsys):
    monkeypatch.setattr(run_history.asvrun, "gpu_facts", lambda python: ("none", 0, {}))
    monkeypatch.setattr(run_history.asvrun, "run_commit", lambda *a: pytest.fail("asv must not run"))
    assert run_history.main(["HEAD", "--machine", "laptop"]) == 2
    assert "--results-dir" in capsys.readouterr().err


def test_local_asv_config_points_elsewhere(tmp_path):
    from suite import asvrun as conf_mod
    path = conf_mod.asv_config(tmp_path / "local-results", into=tmp_path)
    conf = json.loads(path.read_text())
    assert conf["results_dir"] == str((tmp_path / "local-results").resolve())
    assert conf["benchmark_dir"] == str(ROOT / "benchmarks") and conf["repo"] == str(ROOT)
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", ".asv/results/laptop/x.json"])
    assert ignored.returncode == 0


def test_directions_cover_every_benchmark_of_the_committed_suite():
    from suite import directions
    cfg = publish_site.tomllib.loads((ROOT / "benchmarks" / "thresholds.toml").read_text())
    suite = json.loads((ROOT / "results" / "benchmarks.json").read_text())
    unknown = [n for n, b in suite.items() if isinstance(b, dict)
               and directions.direction(n, b.get("type"), cfg, b.get("unit")) is None
               and n.rsplit(".", 1)[-1] not in cfg["regression"]["not_compared"]]
    assert unknown == []
    assert directions.direction("m.track_new_rate", "track", cfg, "ORFs/s") == directions.HIGHER
    assert directions.direction("m.track_count", "track", cfg, "unit") is None
    assert directions.direction("m.time_anything", "time", cfg, "seconds") == directions.LOWER


def test_the_committed_history_is_of_commits_on_main_with_its_software_recorded():
    machines = [m.parent for m in (ROOT / "results").glob("*/machine.json")]
    files = [p for m in machines for p in m.glob("*.json") if p.name != "machine.json"]
    assert files
    for path in files:
        commit = json.loads(path.read_text())["commit_hash"]
        on_main = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit, "main"])
        assert on_main.returncode == 0, f"{path.name}: {commit} is not on main"
    for machine in (ROOT / "results").glob("*/machine.json"):
        info = json.loads(machine.read_text())
        assert all(info.get(k) for k in ("gpu", "num_gpus", "driver", "torch", "cuda")), machine


def test_run_history_adds_the_software_to_machine_json(tmp_path):
    folder = tmp_path / "h200-x9"
    folder.mkdir()
    (folder / "machine.json").write_text(json.dumps({"machine": "h200-x9", "gpu": "NVIDIA H200", "version": 1}))
    run_history.asvrun.record_software(tmp_path, "h200-x9", {"torch": "2.11.0+cu130", "cuda": "13.0", "driver": ""})
    info = json.loads((folder / "machine.json").read_text())
    assert info == {"machine": "h200-x9", "gpu": "NVIDIA H200", "version": 1, "torch": "2.11.0+cu130", "cuda": "13.0"}


def test_two_publishes_at_once_install_the_libraries_once(tmp_path, monkeypatch):
    # A stand-in npm that empties node_modules before it fills it, as `npm ci` does: two installs
    # into one cache at once would each find the other's half-removed tree.
    from suite import vendor as offline_site
    log = tmp_path / "npm.log"
    files = " ".join(f'"$prefix/node_modules/{p}"' for p in [*offline_site.LIBRARIES.values(), ".package-lock.json"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(
        "#!/bin/bash\nprefix=${@: -1}\necho start >> " + str(log) + "\nrm -rf \"$prefix/node_modules\"\n"
        f"sleep 0.5\nfor f in {files}; do mkdir -p \"$(dirname \"$f\")\"; touch \"$f\"; done\n"
        "echo end >> " + str(log) + "\n")
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "vendor"
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(offline_site.node_modules, [cache, cache]))
    assert found == [cache / "node_modules"] * 2
    assert log.read_text().split() == ["start", "end"]


# The site opened in a browser -------------------------------------------------------------------

def chromium_binary():
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


# What a double-click gives: none of the flags that let a file:// page read files by XHR
# (--allow-file-access-from-files, --disable-web-security).  These only keep a headless run
# quiet, offline and alone (a fresh --user-data-dir each time).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900"]
# The grid, a graph, the list and the regressions page: each reads other JSON files of the site.
VIEWS = {"grid": "", "graph": "#bench.Stages.track_mfu", "list": "#/summarylist", "regressions": "#/regressions"}


def browse(url: str, scratch: Path, *output) -> str:
    """Chromium's stdout for url, once the page has loaded what it asks for.

    --virtual-time-budget lets the page run 10 s of its own time (timers, loads) and skips the
    idle waits, so the DOM dumped or the screenshot taken is the page as a reader sees it.
    """
    assert not {"--allow-file-access-from-files", "--disable-web-security"} & set(CHROMIUM_FLAGS)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=scratch)
    done = subprocess.run([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--virtual-time-budget=10000", *output, url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def text_of(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def assert_drawn(doms: dict, commits: list) -> None:
    """The views of the crafted history, drawn from its data, as asv draws them over http."""
    for view, dom in doms.items():
        # asv's modal when a fetch failed: what a file:// page showed before X.json.js
        assert "Error fetching content" not in dom, view
    # grid: a flot plot in each benchmark's thumbnail (made only once its summary JSON came)
    for name in SUITE:
        thumbnail = re.search(rf'id="summarygrid-{re.escape(name)}"[^>]*>(.*?)</div>', doms["grid"])
        assert thumbnail and '<canvas class="flot-base"' in thumbnail.group(1), name
    # graph: the legend names the series drawn, the x axis the commits of the history (index.json)
    assert re.findall(r'class="legendLabel">([^<]*)<', doms["graph"]) == ["n_gpus-1; stage-dnabert",
                                                                        "n_gpus-1; stage-esm2"]
    ticks = re.findall(r'class="flot-tick-label[^"]*"[^>]*>([^<]*)<', doms["graph"])
    assert commits[0][:7] in ticks and commits[-1][:7] in ticks
    # list: rows with the last values of the crafted history (graphs/**/summary.json)
    listed = text_of(doms["list"])
    assert "bench.Stages.track_mfu ('dnabert', 1) 0.320 fraction" in listed
    assert "bench.Stages.track_throughput ('esm2', 1) 70.0 sequences/s" in listed
    # regressions: the three of regressions.json
    found = text_of(doms["regressions"])
    for entry in ("bench.Stages.track_mfu('dnabert', 1)", "bench.Stages.track_throughput('esm2', 1)",
                  "bench.Predict.time_predict(1, False)"):
        assert entry in found


@pytest.fixture(scope="module")
def site_to_browse(tmp_path_factory):
    if chromium_binary() is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the site is not opened in a browser")
    tmp_path = tmp_path_factory.mktemp("browse")
    commits = git_history(tmp_path / "repo", N)
    write_results(tmp_path / "results", GPU_MACHINE, list(enumerate(commits)), history_value)
    code, site = publish(tmp_path, "--results", str(tmp_path / "results"), "--repo", str(tmp_path / "repo"),
                         "--local", str(tmp_path / "none"))
    assert code == 0
    return site, commits, tmp_path


def test_the_site_opened_as_a_file_draws_its_graphs(site_to_browse):
    """A double-click on index.html: Chromium refuses XHR to file:// pages, so asv's own pages
    showed "Error fetching content" and no graph; the site's X.json.js load as scripts instead."""
    site, commits, tmp_path = site_to_browse
    index = (site / "index.html").as_uri()
    assert_drawn({view: browse(index + anchor, tmp_path, "--dump-dom") for view, anchor in VIEWS.items()}, commits)

    # and the graph's lines are on the screen: pixels of asv's line colours in the plot
    Image = pytest.importorskip("PIL.Image")
    browse(index + VIEWS["graph"], tmp_path, f"--screenshot={tmp_path / 'graph.png'}")
    shot = Image.open(tmp_path / "graph.png").convert("RGB")
    plot = shot.crop((220, 120, shot.width, shot.height))  # right of the side panel, below the legend
    # asv's blue and red are saturated; the axes, grid lines and labels are grey
    coloured = sum(plot.convert("HSV").getchannel("S").histogram()[128:])
    assert coloured > 300, f"{coloured} coloured pixels in the plot: no lines drawn"


def test_the_site_served_over_http_still_fetches_its_json(site_to_browse):
    """asv preview or any web server: the pages keep asv's XHR of the JSON files, not the scripts."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site, commits, tmp_path = site_to_browse
    asked = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            asked.append(self.path.split("?")[0])

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        doms = {view: browse(index + anchor, tmp_path, "--dump-dom") for view, anchor in VIEWS.items()}
    finally:
        server.shutdown()
        server.server_close()
    assert_drawn(doms, commits)
    assert {"/index.json", "/info.json", "/regressions.json"} <= set(asked)
    assert [p for p in asked if p.startswith("/graphs/") and p.endswith(".json")]
    assert not [p for p in asked if p.endswith(".json.js")]
