"""The published site's own findings over asv's graphs: regressions found the right way round for
each metric (asv's step detection through suite/directions.py, each metric with its own threshold,
as check_thresholds and compare_commits apply it), their Atom feed, and which parameter values
hold data on the machines drawn."""
from __future__ import annotations

import ast
import datetime
import html
import itertools
import json
import math
import urllib.parse
from pathlib import Path

from suite import directions
from suite.results import read_json
from suite.thresholds import regression_threshold


def graphs(index: dict, html_dir: Path):
    """(graph params, benchmark name, graph path relative to the site, data) of every saved graph."""
    from asv.graph import Graph

    for params, name in itertools.product(index["graph_param_list"], index["benchmarks"]):
        path = Graph.get_file_path(params, name) + ".json"
        if (html_dir / path).is_file():
            yield params, name, path, read_json(html_dir / path)


def entries(benchmark: dict):
    """(flat parameter index or None, entry name, parameter values) as asv names a series."""
    if not benchmark.get("params"):
        yield None, benchmark["name"], ()
        return
    for j, values in enumerate(itertools.product(*benchmark["params"])):
        yield j, f"{benchmark['name']}({', '.join(values)})", values


def series(data: list, j):
    return [row[1] if j is None else (row[1][j] if isinstance(row[1], list) else None) for row in data]


def find_regressions(index: dict, html_dir: Path, cfg: dict) -> list:
    """Entries of asv's regressions.json, from asv's step detection turned to each metric's direction,
    each metric with its own threshold (the one check_thresholds and compare_commits apply)."""
    varying = {k for k, v in index["params"].items() if len(v) > 1}
    found = []
    for params, name, path, data in graphs(index, html_dir):
        benchmark = index["benchmarks"][name]
        better = directions.direction(name, benchmark.get("type"), cfg, benchmark.get("unit"))
        if better is None or not data:
            continue
        for j, entry, values in entries(benchmark):
            decoded = {p: ast.literal_eval(v) for p, v in zip(benchmark.get("param_names", []), values)}
            detected = directions.detect(series(data, j), better, regression_threshold(name, decoded, cfg))
            if detected is None:
                continue
            last, best, jumps = detected
            revs = [row[0] for row in data]
            # asv writes a step within one commit as (None, revision): the range is that commit
            jumps = [(None if revs[b] - revs[a] == 1 else revs[a], revs[b], before, after)
                     for a, b, before, after in jumps]
            graph_params = {k: v for k, v in params.items() if k in varying}
            found.append([entry, path, graph_params, j, last, best, jumps])
    return found


def write_feed(html_dir: Path, index: dict, found: list, cfg: dict) -> None:
    from asv import feed, util

    hashes, dates = index["revision_to_hash"], index["revision_to_date"]
    items = []
    for entry, path, graph_params, j, last, best, jumps in found:
        name = entry.split("(", 1)[0]
        benchmark = index["benchmarks"][name]
        better = directions.direction(name, benchmark.get("type"), cfg, benchmark.get("unit"))
        unit = benchmark.get("unit", "")
        query = dict(graph_params)
        if j is not None:
            values = next(itertools.islice(itertools.product(*benchmark["params"]), j, None))
            query.update({f"p-{p}": v for p, v in zip(benchmark["param_names"], values)})
        for rev_a, rev_b, before, after in jumps:
            commits = hashes[str(rev_b)] if rev_a is None else f"{hashes[str(rev_a)]}-{hashes[str(rev_b)]}"
            link = f"index.html#{name}?{urllib.parse.urlencode({**query, 'commits': commits})}"
            change = after / before - 1 if before else math.inf
            title = f"{change:+.1%} {entry} ({better} is better)"
            summary = (f'<a href="{html.escape(link)}">{change:+.1%}: a regression</a> in {html.escape(commits)}: '
                       f"{util.human_value(before, unit)} before, {util.human_value(after, unit)} after "
                       f"({unit}, {better} is better).")
            when = datetime.datetime.fromtimestamp(dates[str(rev_b)] / 1000, tz=datetime.timezone.utc)
            items.append(feed.FeedEntry(title, when, link, summary, [entry, commits], when))
    items.sort(key=lambda e: e.updated, reverse=True)
    feed.write_atom(str(html_dir / "regressions.xml"), items, title=f"{index['project']} performance regressions",
                    author="virnucpro benchmark site", address=f"{index['project']}.asv")


def measured_values(index: dict, html_dir: Path, local: set) -> dict:
    """{benchmark: {param name: [values with data on a machine drawn by default]}}."""
    seen: dict = {}
    drawn = [p for p in index["graph_param_list"] if p.get("machine") not in local] or index["graph_param_list"]
    for params, name, _, data in graphs(dict(index, graph_param_list=drawn), html_dir):
        benchmark = index["benchmarks"][name]
        for j, _, values in entries(benchmark):
            if values and any(directions.usable(v) for v in series(data, j)):
                for p, v in zip(benchmark["param_names"], values):
                    seen.setdefault(name, {}).setdefault(p, set()).add(v)
    return {n: {p: sorted(v) for p, v in ps.items()} for n, ps in seen.items()}


def drop_unmeasured_rows(html_dir: Path) -> None:
    """The list view's rows (graphs/**/summary.json) of parameter values never measured there."""
    for path in (html_dir / "graphs").rglob("summary.json"):
        rows = read_json(path)
        path.write_text(json.dumps([r for r in rows if r.get("last_value") is not None], separators=(",", ":")))
