#!/usr/bin/env python
"""Check the multi-GPU asv benchmark results of one machine against benchmarks/thresholds.toml.

Reads asv's files directly (results schema 2, as written by asv 0.6): results/benchmarks.json
and results/<machine>/<commit[:8]>-<env>.json. In a result row a benchmark that raised
NotImplementedError (skipped, e.g. fewer GPUs than asked for) is NaN and counts as not measured;
one that raised anything else is null and counts as a failed run.

Result entries whose benchmark version differs from benchmarks.json measure older code: they are
ignored with a note, and if every entry of the commit is like that, nothing is checkable (exit 2).

With --baseline, every metric's series from the baseline to the checked commit (the commits on
main between them that have results, in order) goes through asv's step detection with the
metric's direction (suite/directions.py, shared with the site of scripts/publish_site.py):
a row fails when that finds a step that left the metric worse by more than max_fraction.

Bottleneck shares assume every stage's track_throughput counts the same items (input sequences),
so a stage's time per item is 1/throughput and its share is that over the sum across stages.
They are computed at every GPU count measured, and only reported: they never fail the check.

Exit status: 0 every measured check passes, or nothing was measured on this machine (said so);
1 a check fails, a required row (--require-gpus) was not measured, or a benchmark run failed;
2 no results for the machine/commit, an unreadable results or thresholds file, or only stale results
(0 with --stale-ok: a machine kept for its old history, measured under earlier benchmark versions).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

from suite import checks, commits, results, thresholds
from suite.checks import FAILING, MEASURED, NOT_MEASURED, Row
from suite.results import DataError, StaleError

NOTHING = "nothing measured on this machine"
NO_THRESHOLD = "measured, but no threshold applies to what this machine can run"
REQUIRED = {"scaling": ["stages"], "utilization": ["min_percent", "stages"],
            "bottleneck": ["max_stage_share", "stages"], **thresholds.REGRESSION}


def load_thresholds(path) -> dict:
    """benchmarks/thresholds.toml with every section this check reads."""
    return thresholds.load(path, REQUIRED)


def select_commit(groups: dict, commit: str | None, repo: str, notes: list) -> str:
    """The 8-character prefix of `commit` (a hash, its prefix or a git ref); default: newest on main."""
    if commit is not None:
        full = commits.resolve(commit, repo)
        matches = [p for p in groups if p.startswith(full[:8])]
        if len(matches) != 1:
            raise DataError(f"{len(matches) or 'no'} result sets match commit {commit!r}")
        return matches[0]
    for full in commits.on_main(repo):
        if full[:8] in groups:
            return full[:8]
    notes.append("no results for a commit on branch main (or no git repository): newest by commit date")
    return max(groups, key=lambda p: max(map(date_of, groups[p])))


def date_of(path) -> int:
    data = results.read_json(path)
    return (data.get("date") if isinstance(data, dict) else None) or 0


def load_run(paths: list, benchmarks: dict, notes: list) -> tuple[dict, dict]:
    """(commit info, {name: Series}) of one commit; results of other benchmark versions set aside."""
    info, series, stale = results.load_commit(paths, benchmarks)
    ignored = sorted({n for names in stale.values() for n in names} - set(series))
    if ignored:
        notes.append(f"ignored {len(ignored)} result(s) whose version or parameters differ from benchmarks.json: "
                     f"{', '.join(ignored)}")
        if not series:
            raise StaleError(f"every result of commit {info.get('commit')} is stale against benchmarks.json")
    return info, series


def show(row: Row) -> str:
    if row.value is None:
        return "-"
    formats = {"x": f"{row.value:.2f}x", "%": f"{row.value:.1f}%", "change": f"{row.value:+.1%}",
               "s": f"{row.value:.2f} s", "ORFs/s": f"{row.value:.1f} ORFs/s"}
    return formats.get(row.unit, f"{row.value:g}")


def markdown(report: dict) -> str:
    lines = [f"# Benchmark thresholds: {report['machine']} at {report['commit']}", ""]
    if report["baseline"]:
        lines += [f"Baseline: {report['baseline']}", ""]
    lines += ["| metric | value | threshold | status | detail |", "|---|---|---|---|---|"]
    lines += [f"| {r.metric} | {show(r)} | {r.threshold} | {r.status} | {r.detail} |" for r in report["rows"]]
    if report["failed_runs"]:
        lines += ["", "## Failed benchmark runs", ""] + [f"- {f}" for f in report["failed_runs"]]
    lines += ["", "## Bottlenecks", "",
              "A stage's share is (1/throughput) over the sum of 1/throughput of the stages measured at that "
              "GPU count (every stage is assumed to count the same items). Flags are informational.", ""]
    if report["bottleneck"]:
        lines += ["| GPUs | stage | throughput | share | GPU util | flags |", "|---|---|---|---|---|---|"]
        lines += [f"| {b['n_gpus']} | {b['stage']} | {b['throughput']:.4g} | {b['share']:.0%} | "
                  f"{'-' if b['gpu_utilization'] is None else format(b['gpu_utilization'], '.1f') + '%'} | "
                  f"{'; '.join(b['flags'])} |" for b in report["bottleneck"]]
    else:
        lines.append("No track_throughput results.")
    if report["amdahl"]:
        bound = report["amdahl"]
        lines += ["", f"Amdahl bound on time_predict speedup (time_startup is {bound['serial_fraction']:.1%} of "
                  "time_predict on 1 GPU): " + ", ".join(f"{n} GPUs {v:.2f}x" for n, v in bound["bound"].items())]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    lines += ["", f"Result: {report['result']}"]
    return "\n".join(lines) + "\n"


def plot(curves: dict, minimum: dict, path: str, bound: dict | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    top = max([1, *minimum, *(n for c in curves.values() for n in c)])
    ax.plot([1, top], [1, top], "k--", label="ideal (linear)")
    if bound:
        ns = list(range(1, top + 1))
        s = bound["serial_fraction"]
        ax.plot(ns, [1 / (s + (1 - s) / n) for n in ns], ":", color="tab:gray",
                label=f"Amdahl bound, time_startup = {s:.0%} of time_predict on 1 GPU")
    ax.plot(sorted(minimum), [minimum[n] for n in sorted(minimum)], "rx", label="threshold")
    for label, points in curves.items():
        if points:  # only counts that were measured: nothing is drawn between guesses
            ns = [1, *sorted(points)]
            ax.plot(ns, [1.0, *(points[n] for n in ns[1:])], "o-", label=f"{label} (measured)")
    if not any(curves.values()):
        ax.text(0.5, 0.02, "no multi-GPU speedup measured on this machine", transform=ax.transAxes,
                ha="center", fontsize="small")
    ax.set(xlabel="GPUs", ylabel="speedup over 1 GPU", xticks=sorted({1, *minimum}), yticks=sorted({1, *minimum}))
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def strict(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict(v) for v in value]
    return value


def check(args) -> tuple[int, dict, dict]:
    """(exit status, report, speedup curves); raises DataError for exit status 2."""
    cfg = load_thresholds(args.thresholds)
    notes: list = []
    groups = results.commit_files(Path(args.results_dir), args.machine)
    benchmarks = results.benchmark_list(Path(args.results_dir))
    prefix = select_commit(groups, args.commit, args.repo, notes)
    info, series = load_run(groups[prefix], benchmarks, notes)
    rows, curves = checks.scaling_checks(series, cfg, args.require_gpus, notes, info["commit"])
    rows += checks.utilization_checks(series, cfg, args.require_gpus, notes)
    rows += checks.one_gpu_rows(series, notes)
    baseline = None
    if args.baseline is not None:
        base_prefix = select_commit(groups, args.baseline, args.repo, notes)
        base_info, _ = load_run(groups[base_prefix], benchmarks, notes)
        baseline = base_info["commit"]
        limit = args.max_regression
        order = commits.between(groups, base_prefix, prefix, args.repo)
        runs = [load_run(groups[p], benchmarks, notes)[1] for p in order[:-1]] + [series]
        rows += checks.regression_checks(runs, benchmarks, cfg, limit, notes)
    failed = checks.failed_runs(series)
    bad = failed or any(r.status in FAILING for r in rows)
    checked = failed or any(r.status not in (NOT_MEASURED, MEASURED) for r in rows)
    result = "FAIL" if bad else "pass" if checked else NO_THRESHOLD if any(r.status == MEASURED for r in rows) \
        else NOTHING
    report = {"machine": args.machine, "commit": info["commit"], "date": info["date"], "baseline": baseline,
              "rows": rows, "failed_runs": failed, "bottleneck": checks.bottleneck(series, cfg, notes),
              "notes": list(dict.fromkeys(notes)), "result": result, "thresholds": cfg,
              "amdahl": checks.amdahl(series, cfg, notes)}
    return (1 if bad else 0), report, curves


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", default="results", help="asv results_dir (default: results)")
    parser.add_argument("--machine", required=True, help="asv machine name")
    parser.add_argument("--commit", help="commit hash, prefix or git ref (default: newest on main with results)")
    parser.add_argument("--repo", default=".", help="git repository of the commits (default: .)")
    parser.add_argument("--thresholds", default="benchmarks/thresholds.toml")
    parser.add_argument("--require-gpus", type=int, default=0, metavar="N",
                        help="results for up to N GPUs must exist: not measured counts as FAIL")
    parser.add_argument("--markdown", metavar="FILE")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--plot", metavar="FILE", help="PNG of speedup against GPU count")
    parser.add_argument("--baseline", metavar="COMMIT", help="also fail on regressions against this commit")
    parser.add_argument("--stale-ok", action="store_true",
                        help="exit 0 when the machine has only results of earlier benchmark versions (kept history)")
    parser.add_argument("--max-regression", type=float, metavar="FRACTION",
                        help="largest tolerated worsening vs --baseline, for every metric (default: each metric's own, thresholds [regression])")
    args = parser.parse_args(argv)
    if args.max_regression is not None and args.baseline is None:
        parser.error("--max-regression needs --baseline")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        code, report, curves = check(args)
    except StaleError as exc:
        print(f"check_thresholds: {exc}" + (" (kept history: nothing current to check)" if args.stale_ok else ""),
              file=sys.stderr)
        return 0 if args.stale_ok else 2
    except DataError as exc:
        print(f"check_thresholds: {exc}", file=sys.stderr)
        return 2
    text = markdown(report)
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        data = dict(report, rows=[asdict(r) for r in report["rows"]], exit_status=code)
        Path(args.json).write_text(json.dumps(strict(data), indent=2, allow_nan=False) + "\n")
    if args.plot:
        plot(curves, report["thresholds"]["speedup"], args.plot, report["amdahl"])
    return code


if __name__ == "__main__":
    sys.exit(main())
