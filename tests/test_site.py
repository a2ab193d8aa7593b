"""scripts/publish_site.py: an offline site of the committed GPU history, this machine apart, and
regressions that know which way is better, found by asv's step detection (as check_thresholds)."""
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

asv_results = pytest.importorskip("asv.results")
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
