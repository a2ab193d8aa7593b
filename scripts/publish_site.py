#!/usr/bin/env python3
"""Publish the benchmark site: the committed GPU history, plus this machine's results kept apart.

On top of `asv publish` (asv itself is not changed, only the site it writes):
- history: results/<machine>/ of GPU hosts (machine.json names a GPU) are the history; the
  local results (default .asv/results, ignored by git, where `make bench` writes) are added under
  their own machine names, listed in the graphs' machine panel but not drawn until picked, and
  left out of the grid's thumbnails;
- direction: regressions.json and the feed regressions.xml are made again with asv's step
  detection run the right way round for each metric (suite/directions.py, the same function
  as `check_thresholds.py --baseline`); the list view colours a change by its direction;
- readability: parameter values with no data on the machines drawn are not drawn at first, the
  x axis of a graph is labelled with commit hashes;
- offline: the JavaScript libraries are copied in (suite/vendor.py);
- opened as a file (file://, no web server, no browser flags): each JSON file the pages fetch is
  also written as a script, X.json.js, and asv's fetches load that on a file page
  (virnucpro.ajax in scripts/site/virnucpro.js); served over http they stay asv's XHR;
- about.html says how the results are made and links the thresholds.

Exit status: 0 published; 2 no results, an unreadable file, or npm could not install the libraries.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from suite import ROOT, directions, vendor
from suite.results import DataError, read_json
from suite.site import drop_unmeasured_rows, find_regressions, measured_values, write_feed
from suite.thresholds import tomllib

SITE = ROOT / "scripts" / "site"


class PublishError(DataError):
    """Nothing sensible can be published (exit 2)."""


def gpu_machines(results: Path) -> list:
    """Machine folders of results/ whose machine.json names a GPU: the only history published."""
    found = []
    for folder in sorted(p for p in results.glob("*/") if p.is_dir()):
        info = read_json(folder / "machine.json") if (folder / "machine.json").is_file() else {}
        if info.get("gpu") not in (None, "", "none") and str(info.get("num_gpus", "0")) != "0":
            found.append(folder)
        else:
            print(f"publish_site: {folder} is not a GPU host's (machine.json): left out", file=sys.stderr)
    return found


def off_main(repo: Path, machines: list) -> list:
    """Commits of result files that are not on branch main: asv publish leaves them out."""
    missing = []
    for path in sorted(p for folder in machines for p in folder.glob("*-*.json")):
        commit = (read_json(path).get("commit_hash") or "") if path.is_file() else ""
        on_main = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, "main"],
                                 capture_output=True).returncode == 0
        if commit and not on_main:
            missing.append(f"{path.parent.name}/{commit[:8]}")
    return missing


def stage(target: Path, benchmarks: Path, machines: list) -> None:
    if target.exists():
        if not (target / "benchmarks.json").is_file():
            raise PublishError(f"{target} exists and is not a results folder this script staged: not removed")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copyfile(benchmarks, target / "benchmarks.json")
    for folder in machines:
        shutil.copytree(folder, target / folder.name)


def asv_publish(repo: Path, results: Path, html_dir: Path, conf_dir: Path) -> None:
    conf = read_json(ROOT / "asv.conf.json")
    conf.update(repo=str(repo.resolve()), results_dir=str(results.resolve()), html_dir=str(html_dir.resolve()),
                benchmark_dir=str((ROOT / conf.get("benchmark_dir", "benchmarks")).resolve()),
                env_dir=str((ROOT / conf.get("env_dir", ".asv/env")).resolve()))
    path = conf_dir / f"asv.{results.name}.conf.json"
    path.write_text(json.dumps(conf, indent=2))
    done = subprocess.run([sys.executable, "-m", "asv", "--config", str(path), "publish"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise PublishError(f"asv publish failed: {(done.stdout + done.stderr).strip()[-1500:]}")


# (file, asv's text, ours): each must be found exactly once, or asv changed and this must follow.
PATCHES = [
    ("graphdisplay.js",
     "                        state[param] = [values[0]];\n                    }\n                }\n            });\n        }\n",
     "                        state[param] = [values[0]];\n                    }\n                }\n            });\n"
     "            state.machine = virnucpro.default_machines(state.machine);\n        }\n"),
    ("graphdisplay.js",
     "for (var j = 0; j < param_values.length && (j+1)*count <= max_curves; ++j) {\n"
     "                        item.push(j);\n                    }",
     "for (var j = 0; j < param_values.length && (item.length+1)*count <= max_curves; ++j) {\n"
     "                        if (virnucpro.measured(current_benchmark, param_name, param_values[j])) item.push(j);\n"
     "                    }\n                    if (!item.length) item.push(0);"),
    ("graphdisplay.js",
     'options.xaxis.tickFormatter = function (v, axis) { return ""; };',
     'options.xaxis.ticks = virnucpro.commit_ticks;\n'
     '                options.xaxis.tickFormatter = function (v, axis) { return ""; };'),
    # the legend above the plot, in the 48 px asv leaves there, not over the start of the lines
    ("graphdisplay.js", 'position: "nw",',
     'position: "nw", container: $("#virnucpro-legend"), noColumns: 4,'),
    ("index.html", '<div id="graph">',
     '<div id="graph">\n          <div id="virnucpro-legend" style="position: absolute; top: 0; left: 60px; right: 0; '
     'height: 46px; overflow-y: auto; font-size: 12px"></div>'),
    ("summarylist.js", "if (change > 5) {", "var worse = virnucpro.worse(row.name, change);\n"
                                               "                if (worse > 5) {"),
    ("summarylist.js", "else if (change < -5) {", "else if (worse < -5) {"),
    # asv's five fetches of its data, through virnucpro.ajax: on a file:// page it loads X.json.js
    ("asv.js", "$.ajax({\n                url: url + '?timestamp='",
     "virnucpro.ajax({\n                url: url + '?timestamp='"),
    ("asv.js", '$.ajax({\n            url: "index.json"', 'virnucpro.ajax({\n            url: "index.json"'),
    ("asv.js", '$.ajax({\n            url: "info.json"', 'virnucpro.ajax({\n            url: "info.json"'),
    ("regressions.js", "$.ajax({\n                url: 'regressions.json'",
     "virnucpro.ajax({\n                url: 'regressions.json'"),
    ("graphdisplay.js", '$.ajax({\n                        url: "swallow.ico"',
     'virnucpro.ajax({\n                        url: "swallow.ico"'),
    ("index.html", 'src="asv.js">', 'src="asv.js">\n    </script>\n    <script type="text/javascript" src="virnucpro.js">'),
    ("index.html", '<li id="nav-li-regressions"><a href="#/regressions">Regressions</a></li>',
     '<li id="nav-li-regressions"><a href="#/regressions">Regressions</a></li>\n'
     '\t<li><a href="about.html">About these results</a></li>'),
]


# Ways of fetching that a file:// page is refused, outside virnucpro.ajax (which falls back to $.ajax over http).
FETCH = re.compile(r"\$\.(?:ajax|get|getJSON|post)\(|\bfetch\(|XMLHttpRequest")


def patch(html_dir: Path) -> None:
    shutil.copyfile(SITE / "virnucpro.js", html_dir / "virnucpro.js")
    for name, old, new in PATCHES:
        path = html_dir / name
        text = path.read_text()
        if text.count(new) == 1:
            continue  # patched already
        if text.count(old) != 1:
            raise PublishError(f"{path}: asv's text to change was not found once ({old[:60]!r}...): "
                               "this asv version differs from the one scripts/publish_site.py knows")
        path.write_text(text.replace(old, new))
    # A fetch of a newer asv that the patches above do not route would fail on a file:// page again.
    # (The X.json.js are data, virnucpro.js is the way round.)
    scripts = [p for p in sorted(html_dir.glob("*.js"))
               if p.name != "virnucpro.js" and not p.name.endswith(".json.js")]
    left = [f"{p.name}: {m.group(0)}" for p in scripts for m in FETCH.finditer(p.read_text())]
    if left:
        raise PublishError(f"{html_dir}: asv fetches data in a way a file:// page cannot: {left} "
                           "(route it through virnucpro.ajax in PATCHES)")


def json_as_scripts(html_dir: Path) -> None:
    """Write X.json.js beside each X.json of the site, for a page opened as a file.

    A file:// page may not read files by XHR, but may run scripts: X.json.js hands the unchanged
    text of X.json (valid JSON is a valid JavaScript expression) to virnucpro.loaded.  One script
    per file, loaded when a page asks for it, as the JSON was.
    """
    for path in sorted(html_dir.rglob("*.json")):
        text = path.read_text().strip()
        (path.parent / (path.name + ".js")).write_text(f"virnucpro.loaded({text});\n")


def about(html_dir: Path, index: dict, local: set, cfg: dict, thresholds: Path) -> None:
    shutil.copyfile(thresholds, html_dir / "thresholds.toml")
    rows = "".join(
        f"<tr><td>{html.escape(m)}{' (this machine, off in graphs until picked)' if m in local else ''}</td>"
        + "".join(f"<td>{html.escape(str(info.get(k, '')))}</td>" for k in ("gpu", "num_gpus", "driver", "torch", "cuda"))
        + "</tr>" for m, info in sorted(index["machines"].items()))
    reg = cfg["regression"]
    text = (SITE / "about.html").read_text().format(
        project=html.escape(index["project"]), machines=rows,
        higher=", ".join(reg["higher_is_better"]), lower=", ".join(reg["lower_is_better"]),
        fraction=f"{float(reg['max_fraction']):.0%}",
        per_metric=html.escape(", ".join(f"{k} {v:.1%}" for k, v in reg.get("max_fraction_by_benchmark", {}).items())
                               or "none yet"),
        local=", ".join(sorted(local)) or "none")
    (html_dir / "about.html").write_text(text)


def publish(args) -> dict:
    cfg = tomllib.loads(args.thresholds.read_text())
    history = gpu_machines(args.results) if args.results.is_dir() else []
    local = sorted(p for p in args.local.glob("*/") if p.is_dir()) if args.local.is_dir() else []
    clash = {p.name for p in history} & {p.name for p in local}
    if clash:
        raise PublishError(f"{args.local}: machine name(s) {', '.join(sorted(clash))} belong to the committed "
                           "history: measure under another name (make bench BENCH_MACHINE=...)")
    # This machine's benchmarks.json, where it ran the suite, describes the suite of this checkout:
    # history measured under older benchmark versions is then left undrawn, as asv leaves it.
    benchmarks = next((d / "benchmarks.json" for d in (args.local, args.results)
                       if (d / "benchmarks.json").is_file() and (history if d == args.results else local)), None)
    if benchmarks is None:
        raise PublishError(f"no results to publish in {args.results} or {args.local}")
    unpublished = off_main(args.repo, local)
    if unpublished:
        print(f"publish_site: not on branch main, so not published (asv publishes main only): "
              f"{', '.join(unpublished)}", file=sys.stderr)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    stage(work / "all", benchmarks, history + local)
    asv_publish(args.repo, work / "all", args.html, work)
    if history and local:
        # The grid's thumbnails show the history only: this machine's values would end every line.
        stage(work / "history", benchmarks, history)
        asv_publish(args.repo, work / "history", work / "history-html", work)
        summary = work / "history-html" / "graphs" / "summary"
        if summary.is_dir():  # none where the whole history predates this suite's versions
            shutil.rmtree(args.html / "graphs" / "summary")
            shutil.copytree(summary, args.html / "graphs" / "summary")
    index = read_json(args.html / "index.json")
    local_names = {p.name for p in local}
    found = find_regressions(index, args.html, cfg)
    (args.html / "regressions.json").write_text(json.dumps({"regressions": found}, separators=(",", ":")))
    write_feed(args.html, index, found, cfg)
    index["virnucpro"] = {
        "local_machines": sorted(local_names),
        "higher_is_better": sorted(n for n, b in index["benchmarks"].items()
                                   if directions.direction(n, b.get("type"), cfg, b.get("unit")) == directions.HIGHER),
        "measured": measured_values(index, args.html, local_names),
    }
    (args.html / "index.json").write_text(json.dumps(index, separators=(",", ":")))
    drop_unmeasured_rows(args.html)
    json_as_scripts(args.html)  # after the last change to a JSON file above
    patch(args.html)
    about(args.html, index, local_names, cfg, args.thresholds)
    left = vendor.vendor(args.html, args.vendor)
    if left:
        raise PublishError(f"{args.html}: external references left after vendoring: {left}")
    return {"history": [p.name for p in history], "local": sorted(local_names), "regressions": len(found)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "results", help="committed history (default results/)")
    ap.add_argument("--local", type=Path, default=ROOT / ".asv" / "results", help="this machine's results")
    ap.add_argument("--html", type=Path, default=ROOT / ".asv" / "html", help="the site (default .asv/html)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="git repository of the commits")
    ap.add_argument("--thresholds", type=Path, default=ROOT / "benchmarks" / "thresholds.toml")
    ap.add_argument("--vendor", type=Path, default=ROOT / ".asv" / "vendor", help="npm install folder (a cache)")
    ap.add_argument("--work", type=Path, default=ROOT / ".asv" / "publish", help="scratch folder")
    args = ap.parse_args(argv)
    try:
        done = publish(args)
    except (DataError, vendor.VendorError) as exc:
        print(f"publish_site: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError, tomllib.TOMLDecodeError) as exc:
        print(f"publish_site: {exc!r}", file=sys.stderr)
        return 2
    print(f"site: {args.html.resolve() / 'index.html'}  history: {', '.join(done['history']) or 'none'}; "
          f"this machine (off in graphs at first): {', '.join(done['local']) or 'none'}; "
          f"regressions: {done['regressions']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
