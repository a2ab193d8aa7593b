#!/usr/bin/env python3
"""Pre-merge check: run the asv suite for BASE and HEAD interleaved and flag significant regressions.

    compare_commits.py BASE HEAD --machine NAME [--rounds R] [--results-dir DIR] [--python PY] [-- ASV_RUN_ARGS]
    compare_commits.py BASE HEAD --machine NAME --results-dir DIR [--head-results-dir DIR2] --no-run
    compare_commits.py A A --machine NAME --results-dir RUN1 RUN3 --head-results-dir RUN2 RUN4 --no-run

Without --no-run, BASE and HEAD run R times in turn (BASE, HEAD, BASE, ...) through suite/asvrun.py's
run_commit with `--append-samples --record-samples`, so the rounds pool their samples in one result
file per commit and a drift of the host (heat, another job) lands on both sides.  Results go to DIR
(default: a new temporary folder, kept for --no-run; a result file already there is appended to).
An A/A run (BASE = HEAD) writes HEAD to DIR-head, as asv keeps one file per commit and folder.
With --no-run, several folders per side (separate runs, e.g. of scripts/gpu_session.sh's @DIR
items) pool their samples.

Per benchmark and parameter combination measured on both sides: ratio = head / base median, the
direction from suite/directions.py, the metric's threshold from suite/thresholds.py, and a verdict
(suite/verdicts.py: REGRESSION, improved, not significant, no change, FAILED, n/a).
[regression] not_compared benchmarks are left out.  Exit status: 1 a REGRESSION or FAILED row,
0 otherwise, 2 missing or unreadable results or thresholds, or nothing measured on both sides.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from suite import ROOT, asvrun, commits, thresholds
from suite.results import DataError, method_of
from suite.verdicts import FAILED, P_THRESHOLD, REGRESSION, compare, load, pooled


def fmt(value, unit: str) -> str:
    # one unit for both sides (asv's human_value would show 60.0s beside 1.02m)
    return "-" if value is None else f"{value:.4g} {unit}".strip()


def markdown(report: dict) -> str:
    lines = [f"# {report['base'][:8]} (base) vs {report['head'][:8]} (head) on {report['machine']}", "",
             f"A row is a REGRESSION when head is worse than base by more than its threshold and asv's "
             f"is_different finds the samples different (Mann-Whitney U p < {P_THRESHOLD} with enough samples, "
             "else disjoint 99% CIs). A higher-is-better metric is worse by base/head - 1.", "",
             "| benchmark | params | better | base | head | change | threshold | p / CI | n base/head | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        change = "-" if r["change"] is None else f"{r['change']:+.1%}"
        verdict = f"**{r['verdict']}**" if r["verdict"] in (REGRESSION, FAILED) else r["verdict"]
        lines.append(f"| {method_of(r['benchmark'])} | {r['params']} | {r['better'] or '?'} | "
                     f"{fmt(r['base'], r['unit'])} | {fmt(r['head'], r['unit'])} | {change} | {r['threshold']:.1%} | "
                     f"{r['test'] or '-'} | {r['n_base']}/{r['n_head']} | {verdict}"
                     f"{' (' + r['note'] + ')' if r['note'] else ''} |")
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    flagged = sum(r["verdict"] in (REGRESSION, FAILED) for r in report["rows"])
    lines += ["", f"Result: {flagged} regression(s) or failure(s)" if flagged else "Result: pass"]
    return "\n".join(lines) + "\n"


def run_rounds(base: str, head: str, args, extra: list) -> tuple[Path, Path, list]:
    """Runs BASE and HEAD in turn, args.rounds times; (base dir, head dir, notes on failed runs)."""
    base_dir = Path(args.results_dir or tempfile.mkdtemp(prefix="virnucpro-compare-"))
    head_dir = base_dir
    if args.head_results_dir:
        head_dir = Path(args.head_results_dir)
    elif base == head:
        head_dir = base_dir.with_name(base_dir.name + "-head")
    gpu, num_gpus, software = asvrun.gpu_facts(args.python)
    if num_gpus == 0 and (ROOT / "results").resolve() in (base_dir.resolve(), head_dir.resolve()):
        raise DataError("results/ holds the GPU hosts' history and this host has no GPU: use another --results-dir")
    print("machine:", asvrun.register_machine(args.machine, gpu, num_gpus, args.machine_file), flush=True)
    asv_args = [*extra, *(a for a in ("--append-samples", "--record-samples") if a not in extra)]
    notes = []
    with tempfile.TemporaryDirectory(prefix="virnucpro-compare-conf-") as confs:  # not in a results dir: asv scans those
        config = {d: asvrun.asv_config(d, into=Path(confs) / str(i)) for i, d in enumerate({base_dir, head_dir})}
        for r in range(1, args.rounds + 1):
            for side, sha, folder in (("base", base, base_dir), ("head", head, head_dir)):
                print(f"== round {r}/{args.rounds}: {side}", flush=True)
                if asvrun.run_commit(sha, args.python, args.machine, asv_args, config[folder]) != 0:
                    notes.append(f"asv run reported failures for {side} {sha[:8]} in round {r}")
    for folder in {base_dir, head_dir}:
        asvrun.record_software(folder, args.machine, software)
    print(f"results kept in {base_dir}" + (f" and {head_dir}" if head_dir != base_dir else ""), flush=True)
    return base_dir, head_dir, notes


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 usage="%(prog)s BASE HEAD --machine NAME [options] [-- ASV_RUN_ARGS...]")
    ap.add_argument("base")
    ap.add_argument("head")
    ap.add_argument("--machine", required=True)
    ap.add_argument("--rounds", type=int, default=2, help="BASE/HEAD runs each, interleaved (default 2)")
    ap.add_argument("--results-dir", nargs="+", help="scratch results folder (default: a new temporary one); "
                    "with --no-run, one or more runs of BASE, pooled")
    ap.add_argument("--head-results-dir", nargs="+", help="HEAD's results folder(s) (default: --results-dir)")
    ap.add_argument("--python", default=sys.executable, help="Python with virnucpro's dependencies and asv")
    ap.add_argument("--machine-file", type=Path, default=Path.home() / ".asv-machine.json")
    ap.add_argument("--thresholds", default=str(ROOT / "benchmarks" / "thresholds.toml"))
    ap.add_argument("--no-run", action="store_true", help="only compare existing results (needs --results-dir)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--markdown", metavar="FILE")
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    if args.no_run and not args.results_dir:
        ap.error("--no-run needs --results-dir")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return args, argv[cut + 1:]


def main(argv=None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        cfg = thresholds.load(args.thresholds)
        base_sha, head_sha, notes = commits.resolve(args.base), commits.resolve(args.head), []
        if args.no_run:
            base_dirs, head_dirs = args.results_dir, args.head_results_dir or args.results_dir
        else:
            if len(args.results_dir or []) > 1 or len(args.head_results_dir or []) > 1:
                raise DataError("several results folders per side are for --no-run only")
            args.results_dir = (args.results_dir or [None])[0]
            args.head_results_dir = (args.head_results_dir or [None])[0]
            base_dir, head_dir, notes = run_rounds(base_sha, head_sha, args, extra)
            base_dirs, head_dirs = [base_dir], [head_dir]
        base_sha, meta, base, n1 = pooled([load(d, args.machine, base_sha) for d in base_dirs])
        head_sha, head_meta, head, n2 = pooled([load(d, args.machine, head_sha) for d in head_dirs])
        rows = compare(base, head, {**meta, **head_meta}, cfg)
        if not any(r["change"] is not None or r["verdict"] == FAILED for r in rows):
            raise DataError(f"no benchmark was measured in both {base_sha[:8]} and {head_sha[:8]}")
    except DataError as exc:
        print(f"compare_commits: {exc}", file=sys.stderr)
        return 2
    code = 1 if any(r["verdict"] in (REGRESSION, FAILED) for r in rows) else 0
    report = {"machine": args.machine, "base": base_sha, "head": head_sha, "p_threshold": P_THRESHOLD,
              "rows": rows, "notes": list(dict.fromkeys(notes + n1 + n2)), "exit_status": code}
    text = markdown(report)
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
