#!/usr/bin/env python3
"""Noise of each benchmark from repeated asv runs of one commit on one machine, and the regression
threshold it supports.

    noise_table.py --machine NAME --commit SHA DIR1 DIR2 DIR3 ... [--markdown FILE] [--json FILE] [--toml-snippet]

Each DIR is an asv results folder holding one run of the commit (e.g. three `run_history.py
SHA^! --results-dir DIRi -- --record-samples` on the same host).  One DIR alone works too (say a
file that pooled several runs with --append-samples), but asv keeps no run boundaries in a pooled
file, so its between-run CV is unknown and only the within-run noise counts.

Per benchmark and parameter combination:
  per-run medians    asv's result of each run (the median of its samples)
  between-run CV     sample standard deviation / mean of the per-run medians, in %
  within-run CV      sample standard deviation / mean of one run's samples, in %, averaged over runs
  suggested threshold = max(1%, 4 x the larger of the two CVs, rounded up to half a percent)
A drift of 4 CVs is what an unchanged commit should not reach by chance (the site's step detection
has no significance test, so the threshold alone must keep it quiet); 1% is the floor because
effects smaller than that are not worth a maintainer's time, and a GPU stage whose CV is 0.2%
then still shows a 3% loss.  --toml-snippet prints
the [regression.max_fraction_by_benchmark] table of thresholds.toml (read by compare_commits.py),
one key per method when all its parameter combinations agree.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from suite import verdicts
from suite.results import DataError, method_of

FLOOR, FACTOR, STEP = 0.01, 4, 0.5  # STEP: thresholds are whole multiples of half a percent
RULE = (f"suggested threshold = max({FLOOR:.0%}, {FACTOR} x max(between-run CV, mean within-run CV) "
        f"rounded up to {STEP:g}%); CV = sample std / mean")


def cv(values: list) -> float | None:
    """Coefficient of variation in percent (sample standard deviation), None below two values."""
    values = [v for v in values if verdicts.finite(v)]
    if len(values) < 2 or statistics.fmean(values) == 0:
        return None
    return 100 * statistics.stdev(values) / abs(statistics.fmean(values))


def suggest(between: float | None, within: float | None) -> float | None:
    known = [c for c in (between, within) if c is not None]
    if not known:
        return None
    # round() first: 4 x 2.0 is 8.000000000000002 in floats, which must stay 8%, not become 8.5%
    return max(FLOOR, math.ceil(round(FACTOR * max(known) / STEP, 6)) * STEP / 100)


def table(runs: list[dict]) -> list[dict]:
    """`runs`: {(name, params label): Measurement} of each run -> one row per benchmark/params."""
    rows = []
    for name, label in sorted(set().union(*runs)):
        measured = [run[(name, label)] for run in runs if (name, label) in run and verdicts.finite(run[(name, label)].value)]
        if not measured:
            continue
        medians = [m.value for m in measured]
        within_each = [c for c in (cv(m.samples or []) for m in measured) if c is not None]
        between = cv(medians)
        within = statistics.fmean(within_each) if within_each else None
        rows.append({"benchmark": name, "params": label, "medians": medians, "between_cv_percent": between,
                     "within_cv_percent": within, "n_runs": len(measured),
                     "n_samples": sum(len(m.samples or []) for m in measured),
                     "suggested_threshold": suggest(between, within)})
    return rows


def percent(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def markdown(report: dict) -> str:
    lines = [f"# Noise of {report['commit'][:8]} on {report['machine']} over {len(report['dirs'])} run(s)", "",
             f"Rule: {RULE}.", "",
             "| benchmark | params | per-run medians | between-run CV | within-run CV | runs | samples | suggested |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        medians = ", ".join(f"{m:.4g}" for m in r["medians"])
        suggested = "-" if r["suggested_threshold"] is None else f"{r['suggested_threshold']:.1%}"
        lines.append(f"| {method_of(r['benchmark'])} | {r['params']} | {medians} | "
                     f"{percent(r['between_cv_percent'])} | {percent(r['within_cv_percent'])} | {r['n_runs']} | "
                     f"{r['n_samples']} | {suggested} |")
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def toml_snippet(rows: list[dict]) -> str:
    by_method: dict = {}
    for r in rows:
        if r["suggested_threshold"] is not None:
            by_method.setdefault(method_of(r["benchmark"]), []).append(r)
    lines = [f"# from noise_table.py: {RULE}", "[regression.max_fraction_by_benchmark]"]
    for method, group in sorted(by_method.items()):
        values = {r["suggested_threshold"] for r in group}
        if len(values) == 1:
            lines.append(f'"{method}" = {values.pop():.3f}')
        else:
            lines += [f'"{method}({r["params"]})" = {r["suggested_threshold"]:.3f}' for r in group]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="asv results folders, one run of the commit each")
    ap.add_argument("--machine", required=True)
    ap.add_argument("--commit", required=True, help="commit hash, prefix or git ref")
    ap.add_argument("--markdown", metavar="FILE")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--toml-snippet", action="store_true", help="also print a table for thresholds.toml")
    args = ap.parse_args(argv)
    runs, notes, commit = [], [], args.commit
    try:
        for folder in args.dirs:
            commit, _, rows, more = verdicts.load(folder, args.machine, args.commit)
            runs.append(rows)
            notes += more
    except DataError as exc:
        print(f"noise_table: {exc}", file=sys.stderr)
        return 2
    if len(runs) == 1:
        notes.append("one results folder: between-run CV unknown, the suggestion rests on the within-run noise only")
    report = {"machine": args.machine, "commit": commit, "dirs": args.dirs, "rule": RULE,
              "rows": table(runs), "notes": list(dict.fromkeys(notes))}
    text = markdown(report)
    print(text, end="")
    if args.toml_snippet:
        print("\n" + toml_snippet(report["rows"]), end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
