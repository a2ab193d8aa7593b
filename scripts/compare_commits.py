#!/usr/bin/env python3
"""Pre-merge check: run the asv suite for BASE and HEAD interleaved and flag significant regressions.

    compare_commits.py BASE HEAD --machine NAME [--rounds R] [--results-dir DIR] [--python PY] [-- ASV_RUN_ARGS]
    compare_commits.py BASE HEAD --machine NAME --results-dir DIR [--head-results-dir DIR2] --no-run
    compare_commits.py A A --machine NAME --results-dir RUN1 RUN3 --head-results-dir RUN2 RUN4 --no-run

Without --no-run, BASE and HEAD run R times in turn (BASE, HEAD, BASE, ...) through run_history.py's
run_commit with `--append-samples --record-samples`, so the rounds pool their samples in one result
file per commit and a drift of the host (heat, another job) lands on both sides.  Results go to DIR
(default: a new temporary folder, kept for --no-run; a result file already there is appended to).
An A/A run (BASE = HEAD) writes HEAD to DIR-head, as asv keeps one file per commit and folder.
With --no-run, several folders per side (separate runs, e.g. of scripts/gpu_session.sh's @DIR
items) pool their samples.

Per benchmark and parameter combination measured on both sides: ratio = head / base median, the
direction from scripts/directions.py; as there, a higher-is-better metric is judged by its
reciprocal: "worse by F" is head/base - 1 > F (lower is better) or base/head - 1 > F (higher).
  REGRESSION       worse by more than the threshold AND asv._stats.is_different finds it significant
                   (Mann-Whitney U p < 0.002 with enough samples, else disjoint 99% CIs)
  improved         better by more than the threshold, and significant
  not significant  worse (or better) by more than the threshold, but not significant
  no change        within the threshold;  FAILED  ran in BASE, failed in HEAD
  n/a              on one side only, skipped, no known direction or a zero value
[regression] not_compared benchmarks are left out.  Exit status: 1 a REGRESSION or FAILED row,
0 otherwise, 2 missing or unreadable results or thresholds, or nothing measured on both sides.

Thresholds (benchmarks/thresholds.toml): [regression] max_fraction unless overridden by
    [regression.max_fraction_by_benchmark]
    "track_throughput" = 0.03                        # all its parameter combinations
    "track_throughput(stage='esm2', n_gpus=1)" = 0.02  # some parameters, as Python literals
keyed by method name (the last dotted part of the asv name); of the matching keys the one naming
most parameters wins, then the smaller value.  regression_threshold() is the lookup to share.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import directions  # noqa: E402
import run_history  # noqa: E402  (its run_commit, machine registration and asv config)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REGRESSION, IMPROVED, NOT_SIGNIFICANT, NO_CHANGE, FAILED, NA = (
    "REGRESSION", "improved", "not significant", "no change", "FAILED", "n/a")
P_THRESHOLD = 0.002  # asv._stats.is_different's default, stated here for the report


class DataError(Exception):
    """Results or thresholds cannot be read (exit 2)."""


def method_of(name: str) -> str:
    return name.split("(", 1)[0].rsplit(".", 1)[-1]


def parse_key(key: str) -> tuple[str, dict]:
    """'track_throughput(stage='esm2', n_gpus=1)' -> ('track_throughput', {'stage': 'esm2', 'n_gpus': 1})."""
    if "(" not in key:
        return method_of(key), {}
    try:
        call = ast.parse(method_of(key) + "(" + key.split("(", 1)[1], mode="eval").body
        if not isinstance(call, ast.Call) or call.args or any(k.arg is None for k in call.keywords):
            raise ValueError("parameters go as name=value")
        return method_of(key), {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as exc:
        raise DataError(f"[regression.max_fraction_by_benchmark] key {key!r}: {exc}") from exc


def regression_threshold(name: str, params: dict, cfg: dict) -> float:
    """Largest tolerated worsening (a fraction) of benchmark `name` at `params` ({param name: value,
    decoded as Python literals}) under the thresholds dict `cfg` (see the module docstring)."""
    table = cfg["regression"].get("max_fraction_by_benchmark", {})
    best = None  # (parameters named, -threshold): more specific first, then stricter
    for key, value in table.items():
        method, wanted = parse_key(key)
        if method == method_of(name) and all(k in params and params[k] == v for k, v in wanted.items()):
            best = max(best or (-1, 0.0), (len(wanted), -float(value)))
    return -best[1] if best else float(cfg["regression"]["max_fraction"])


def load_thresholds(path) -> dict:
    try:
        cfg = tomllib.loads(Path(path).read_text())
        for key in ("max_fraction", "higher_is_better", "lower_is_better"):
            cfg["regression"][key]  # noqa: B018  (directions.direction reads all three)
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read thresholds {path}: {exc!r}") from exc
    for key in cfg["regression"].get("max_fraction_by_benchmark", {}):
        parse_key(key)  # a malformed key is an error now, not a silently unmatched one later
    return cfg


@dataclass
class Measurement:
    params: dict      # decoded parameter values
    value: float | None  # asv's result: the median; None a failed run, NaN a skipped one
    stats: dict | None
    samples: list | None


finite = directions.usable  # a number, not NaN or infinite


def resolve(ref: str) -> str:
    """A git ref of this repository as a full hash; anything git does not know is taken as a hash (prefix)."""
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=ROOT,
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ref


def load_commit(results_dir, machine: str, commit: str) -> tuple[str, dict, dict, list]:
    """(full commit hash, benchmarks.json entries, {(name, params label): Measurement}, notes)."""
    # asv is imported only here and below: check_thresholds.py and publish_site.py, which run
    # without asv, can then import regression_threshold from this module
    from asv import util
    from asv.results import Results

    results_dir, notes = Path(results_dir), []
    try:
        meta = util.load_json(str(results_dir / "benchmarks.json"), api_version=2)
    except (OSError, util.UserError) as exc:
        raise DataError(f"cannot read {results_dir / 'benchmarks.json'}: {exc}") from exc
    meta = {k: v for k, v in meta.items() if isinstance(v, dict)}
    prefix = resolve(commit)[:8]
    folder = results_dir / machine
    paths = [p for p in sorted(folder.glob("*-*.json")) if p.name.split("-")[0].startswith(prefix)]
    found = {p.name.split("-")[0] for p in paths}
    if len(found) != 1:
        raise DataError(f"{len(found) or 'no'} result sets match commit {commit!r} in {folder}")
    newest: dict = {}  # several environments: each benchmark from the one that ran it last
    for path in paths:
        try:
            res = Results.load(str(path), machine_name=machine)
        except (OSError, util.UserError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc
        keys = res.get_result_keys(meta)  # asv's rule: drops results of another benchmark version
        stale = set(res.get_all_result_keys()) - keys
        if stale:
            notes.append(f"{path.name}: ignored {len(stale)} result(s) of another benchmark version: "
                         + ", ".join(sorted(stale)))
        for name in keys:
            if newest.get(name, (-1,))[0] <= (res.started_at.get(name) or 0):
                newest[name] = (res.started_at.get(name) or 0, res)
    rows = {}
    for name, (_, res) in newest.items():
        params, names = meta[name]["params"], meta[name]["param_names"]
        columns = (res.get_result_value(name, params), res.get_result_stats(name, params),
                   res.get_result_samples(name, params))
        for combo, value, stats, samples in zip(itertools.product(*params), *columns):
            label = ", ".join(f"{n}={v}" for n, v in zip(names, combo))
            decoded = {n: ast.literal_eval(v) for n, v in zip(names, combo)}
            rows[(name, label)] = Measurement(decoded, value, stats, samples)
    return res.commit_hash, meta, rows, notes


def pooled(loaded: list) -> tuple[str, dict, dict, list]:
    """load_commit() of several separate runs of one commit as one: their samples together, the
    median and asv's statistics computed again (a row without samples keeps the first run's)."""
    from asv_runner.statistics import compute_stats

    sha, meta, rows, notes = loaded[0]
    for _, more_meta, more_rows, more_notes in loaded[1:]:
        meta, notes = {**meta, **more_meta}, notes + more_notes
        for key, extra in more_rows.items():
            have = rows.get(key)
            if have is None:
                rows[key] = extra
            elif have.samples is not None and extra.samples is not None:
                samples = have.samples + extra.samples
                value, stats = compute_stats(samples, 1)
                rows[key] = Measurement(have.params, value, stats, samples)
    return sha, meta, rows, notes


def significance(a: Measurement, b: Measurement) -> tuple[bool | None, float | None, str]:
    """(significant?, Mann-Whitney p or None, how it was decided); None when nothing can decide."""
    from asv._stats import is_different, mann_whitney_u

    if not all(s and "ci_99_a" in s and "ci_99_b" in s for s in (a.stats, b.stats)):
        return None, None, "no samples or CI recorded"
    different = is_different(a.samples, b.samples, a.stats, b.stats, P_THRESHOLD)
    if a.samples and b.samples:
        x, y = ([v for v in s if finite(v)] for s in (a.samples, b.samples))
        # is_different runs the U test only where its smallest possible p can pass; so does this
        if x and y and 1 / math.comb(len(x) + len(y), min(len(x), len(y))) < P_THRESHOLD:
            p = mann_whitney_u(x, y)[1]
            return different, p, f"U test p={p:.2g}"
    return different, None, "99% CIs " + ("disjoint" if different else "overlap")


def compare(base: dict, head: dict, meta: dict, cfg: dict) -> list[dict]:
    rows, skip = [], set(cfg["regression"].get("not_compared", []))  # e.g. a count of readings, no performance
    for name, label in sorted(base.keys() | head.keys()):
        a, b = base.get((name, label)), head.get((name, label))
        if method_of(name) in skip:
            continue
        if not any(m is not None and (m.value is None or finite(m.value)) for m in (a, b)):
            continue  # skipped (NaN) or absent on both sides: e.g. more GPUs than the host has
        m = a or b
        info = meta.get(name, {})
        better = directions.direction(name, info.get("type"), cfg, info.get("unit", ""))
        row = {"benchmark": name, "params": label, "unit": info.get("unit", ""), "better": better,
               "base": a.value if a and finite(a.value) else None, "head": b.value if b and finite(b.value) else None,
               "change": None, "threshold": regression_threshold(name, m.params, cfg), "p_value": None,
               "test": "", "n_base": len(a.samples or []) if a else 0, "n_head": len(b.samples or []) if b else 0,
               "verdict": NA, "note": ""}
        rows.append(row)
        if a is None or b is None:
            row["note"] = f"only in {'head' if a is None else 'base'}"
        elif b.value is None and finite(a.value):
            row["verdict"], row["note"] = FAILED, "failed in head"
        elif row["base"] is None or row["head"] is None:
            side, missing = ("base", a) if row["base"] is None else ("head", b)
            row["note"] = f"{'failed' if missing.value is None else 'skipped'} in {side}"
        elif row["base"] <= 0 or row["head"] <= 0:
            row["note"] = "zero or negative value"
        elif better is None:
            row["change"] = row["head"] / row["base"] - 1
            row["note"] = "direction unknown: list it in [regression] of thresholds.toml"
        else:
            ratio = row["head"] / row["base"]
            row["change"] = ratio - 1
            worse = ratio - 1 if better == directions.LOWER else 1 / ratio - 1
            significant, row["p_value"], row["test"] = significance(a, b)
            better_by, limit = 1 / (1 + worse) - 1, row["threshold"]
            if worse > limit or better_by > limit:
                row["verdict"] = (REGRESSION if worse > 0 else IMPROVED) if significant else NOT_SIGNIFICANT
                if not significant:
                    row["note"] = (f"{'worse' if worse > 0 else 'better'} by {max(worse, better_by):.1%} > "
                                   f"{limit:.1%}, not significant")
            else:
                row["verdict"] = NO_CHANGE
    return rows


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
    gpu, num_gpus, software = run_history.gpu_facts(args.python)
    if num_gpus == 0 and (ROOT / "results").resolve() in (base_dir.resolve(), head_dir.resolve()):
        raise DataError("results/ holds the GPU hosts' history and this host has no GPU: use another --results-dir")
    print("machine:", run_history.register_machine(args.machine, gpu, num_gpus, args.machine_file), flush=True)
    asv_args = [*extra, *(a for a in ("--append-samples", "--record-samples") if a not in extra)]
    notes = []
    with tempfile.TemporaryDirectory(prefix="virnucpro-compare-conf-") as confs:  # not in a results dir: asv scans those
        config = {d: run_history.asv_config(d, into=Path(confs) / str(i)) for i, d in enumerate({base_dir, head_dir})}
        for r in range(1, args.rounds + 1):
            for side, sha, folder in (("base", base, base_dir), ("head", head, head_dir)):
                print(f"== round {r}/{args.rounds}: {side}", flush=True)
                if run_history.run_commit(sha, args.python, args.machine, asv_args, config[folder]) != 0:
                    notes.append(f"asv run reported failures for {side} {sha[:8]} in round {r}")
    for folder in {base_dir, head_dir}:
        run_history.record_software(folder, args.machine, software)
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
        cfg = load_thresholds(args.thresholds)
        base_sha, head_sha, notes = resolve(args.base), resolve(args.head), []
        if args.no_run:
            base_dirs, head_dirs = args.results_dir, args.head_results_dir or args.results_dir
        else:
            if len(args.results_dir or []) > 1 or len(args.head_results_dir or []) > 1:
                raise DataError("several results folders per side are for --no-run only")
            args.results_dir = (args.results_dir or [None])[0]
            args.head_results_dir = (args.head_results_dir or [None])[0]
            base_dir, head_dir, notes = run_rounds(base_sha, head_sha, args, extra)
            base_dirs, head_dirs = [base_dir], [head_dir]
        base_sha, meta, base, n1 = pooled([load_commit(d, args.machine, base_sha) for d in base_dirs])
        head_sha, head_meta, head, n2 = pooled([load_commit(d, args.machine, head_sha) for d in head_dirs])
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
