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
metric's direction (scripts/directions.py, shared with the site of scripts/publish_site.py):
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
import ast
import itertools
import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import directions  # noqa: E402  (scripts/directions.py: shared with the site)
from compare_commits import regression_threshold  # noqa: E402  (one threshold per metric, as the pre-merge check)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PASS, FAIL, FAILED_RUN, NOT_MEASURED = "pass", "FAIL", "failed run", "not measured"
MEASURED = "measured"  # a figure with no threshold of its own (one GPU), shown so that it is seen
REQUIRED_MISSING = "required, not measured"
FAILING = (FAIL, FAILED_RUN, REQUIRED_MISSING)
NOTHING = "nothing measured on this machine"
NO_THRESHOLD = "measured, but no threshold applies to what this machine can run"
MISSING = object()  # no result row at all for these parameters


class DataError(Exception):
    """The results cannot be checked (exit 2)."""


class StaleError(DataError):
    """Every result of the commit was measured under other benchmark versions (exit 2, 0 with --stale-ok)."""


@dataclass
class Row:
    check: str
    metric: str
    value: float | None
    threshold: str
    status: str
    unit: str = ""
    detail: str = ""


@dataclass
class Series:
    """One benchmark's results: decoded parameter tuple (in param_names order) -> value."""
    name: str
    param_names: list
    values: dict

    def get(self, **want):
        names = [n for n in want if n in self.param_names]
        for key, value in self.values.items():
            if all(key[self.param_names.index(n)] == want[n] for n in names):
                return value
        return MISSING

    def grid(self, name) -> list:
        if name not in self.param_names:
            return []
        i = self.param_names.index(name)
        return sorted({key[i] for key in self.values})


def load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def decode(param: str):
    """asv stores parameter values as their repr: "1", "True", "'dnabert'"."""
    try:
        return ast.literal_eval(param)
    except (ValueError, SyntaxError):
        return param


def git(repo: str, *args) -> str | None:
    try:
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def commit_files(results_dir: Path, machine: str) -> dict:
    """Result files of the machine, grouped by the 8-character commit prefix of their name."""
    folder = results_dir / machine
    groups: dict = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name != "machine.json":
            groups.setdefault(path.name.split("-")[0], []).append(path)
    if not groups:
        raise DataError(f"no results for machine {machine!r} in {folder}")
    return groups


def select_commit(groups: dict, commit: str | None, repo: str, notes: list) -> str:
    """The 8-character prefix of `commit` (a hash, its prefix or a git ref); default: newest on main."""
    if commit is not None:
        full = git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}") or commit
        matches = [p for p in groups if p.startswith(full[:8])]
        if len(matches) != 1:
            raise DataError(f"{len(matches) or 'no'} result sets match commit {commit!r}")
        return matches[0]
    for full in (git(repo, "rev-list", "main") or "").split():
        if full[:8] in groups:
            return full[:8]
    notes.append("no results for a commit on branch main (or no git repository): newest by commit date")
    return max(groups, key=lambda p: max(date_of(load_json(f)) for f in groups[p]))


def date_of(data) -> int:
    return (data.get("date") if isinstance(data, dict) else None) or 0


def load_run(paths: list, benchmarks: dict, notes: list) -> tuple[dict, dict]:
    """(commit info, {name: Series}) from the result files of one commit (one per environment)."""
    entries, info, stale = {}, {}, []
    for path in paths:
        data = load_json(path)
        if not isinstance(data, dict) or data.get("version") != 2 or "result_columns" not in data:
            raise DataError(f"{path} is not an asv results file of schema version 2")
        info = {"commit": data.get("commit_hash"), "date": data.get("date")}
        for name, row in data.get("results", {}).items():
            entry = dict(zip(data["result_columns"], row))
            if (entries.get(name, {}).get("started_at") or 0) <= (entry.get("started_at") or 0):
                entries[name] = entry
    series = {}
    for name, entry in entries.items():
        meta = benchmarks.get(name)
        params = entry.get("params") or []
        if meta is None or entry.get("version") not in (None, meta.get("version")) \
                or len(params) != len(meta.get("param_names", [])):
            stale.append(name)
            continue
        keys = list(itertools.product(*([decode(p) for p in values] for values in params)))
        result = entry.get("result")
        result = [None] * len(keys) if result is None else result  # asv writes a wholly failed benchmark as null
        series[name] = Series(name, list(meta["param_names"]), dict(zip(keys, result)))
    if stale:
        notes.append(f"ignored {len(stale)} result(s) whose version or parameters differ from benchmarks.json: "
                     f"{', '.join(sorted(stale))}")
        if not series:
            raise StaleError(f"every result of commit {info.get('commit')} is stale against benchmarks.json")
    return info, series


def find(series: dict, method: str, notes: list) -> Series | None:
    """The benchmark whose name ends in `method`, whatever module or class holds it."""
    names = sorted(n for n in series if n.rsplit(".", 1)[-1] == method)
    if len(names) > 1:
        notes.append(f"several benchmarks named {method}: used {names[0]}")
    return series[names[0]] if names else None


def status_of(*values) -> str | None:
    if any(v is None for v in values):
        return FAILED_RUN
    if any(v is MISSING or math.isnan(v) for v in values):
        return NOT_MEASURED
    return None


def judged(row: Row, n_gpus: int, require: int) -> Row:
    if row.status == NOT_MEASURED and n_gpus <= require:
        row.status = REQUIRED_MISSING
    return row


def finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def lookup(s: Series | None, **want):
    return MISSING if s is None else s.get(**want)


def predicted(series: dict, commit: str | None, notes: list, targets: dict):
    """The time_predict speedup that track_predicted_speedup replayed from the same commit's 1-GPU
    run (virnucpro/replay.py), as a row's detail: a prediction, never a measurement, set against
    [predicted_speedup], the design's margin over the measured threshold, where it has one."""
    s = find(series, "track_predicted_speedup", notes)

    def detail(n: int) -> str:
        value = finite(lookup(s, n_gpus=n))
        if value is None:
            return ""
        text = f"predicted {value:.2f}x (replay of the 1-GPU run at {(commit or '?')[:8]})"
        if n in targets:
            text += f"; design target >= {targets[n]:g}x: {'met' if value >= targets[n] else 'missed'}"
        return text
    return detail


def scaling_checks(series: dict, cfg: dict, require: int, notes: list, commit: str | None = None) -> tuple[list, dict]:
    """Speedup rows and the curves to plot ({label: {n_gpus: speedup}}).  A time_predict row not
    measured says, where the results hold it, the speedup replayed from the 1-GPU run."""
    minimum = cfg["speedup"]
    predict, throughput = find(series, "time_predict", notes), find(series, "track_throughput", notes)
    replayed = predicted(series, commit, notes, cfg.get("predicted_speedup", {}))
    metrics = [("time_predict speedup (persistent models)",
                lambda n: lookup(predict, n_gpus=n, persistent_models=True), True)]
    metrics += [(f"{stage} throughput scaling", lambda n, s=stage: lookup(throughput, stage=s, n_gpus=n), False)
                for stage in cfg["scaling"]["stages"]]
    rows, curves = [], {}
    for label, value, is_time in metrics:
        curves[label] = {}
        for n in sorted(minimum):
            one, many = value(1), value(n)
            status, ratio = status_of(one, many), None
            if status is None:
                num, den = (one, many) if is_time else (many, one)  # a time shrinks, a rate grows
                ratio = num / den if den else math.inf
                status = PASS if ratio >= minimum[n] else FAIL
                curves[label][n] = ratio
            row = Row("speedup", f"{label}, n_gpus={n}", ratio, f">= {minimum[n]:g}x", status, "x")
            if status == NOT_MEASURED and is_time:
                row.detail = replayed(n)
            rows.append(judged(row, n, require))
    return rows, curves


def utilization_checks(series: dict, cfg: dict, require: int, notes: list) -> list:
    """NVML's figure is the one checked; beside it, how many NVML readings it averages and the
    profiler's exact kernel-busy share, so that a reader can tell a real shortfall from a short window."""
    least = float(cfg["utilization"]["min_percent"])
    util = find(series, "track_gpu_utilization", notes)
    nvml, busy = find(series, "track_nvml_samples", notes), find(series, "track_kernel_busy", notes)
    counts = set(util.grid("n_gpus") if util else []) | {1} | set(cfg["speedup"])
    rows = []
    for stage in cfg["utilization"]["stages"]:
        for n in sorted(counts):
            value = lookup(util, stage=stage, n_gpus=n)
            status = status_of(value) or (PASS if value >= least else FAIL)
            reads, exact = finite(lookup(nvml, stage=stage, n_gpus=n)), finite(lookup(busy, stage=stage, n_gpus=n))
            detail = "; ".join(([f"{reads:.0f} NVML samples"] if reads is not None else [])
                               + ([f"kernel busy {exact:.1f}% (profiler)"] if exact is not None else []))
            rows.append(judged(Row("utilization", f"{stage} GPU utilization, n_gpus={n}", finite(value),
                                   f">= {least:g}%", status, "%", detail), n, require))
    return rows


def one_gpu_rows(series: dict, notes: list) -> list:
    """The end-to-end figures of one GPU, which no threshold judges alone but every speedup divides by."""
    shown = [("time_predict", dict(n_gpus=1, persistent_models=True), "s"),
             ("time_startup", dict(n_gpus=1), "s"), ("track_predict_throughput", dict(n_gpus=1), "ORFs/s"),
             ("track_speedup_vs_reference", {}, "x")]
    rows = []
    for method, params, unit in shown:
        value = finite(lookup(find(series, method, notes), **params))
        if value is not None:
            label = ", ".join(f"{k}={v}" for k, v in params.items())
            rows.append(Row("one GPU", f"{method}({label})" if label else method, value, "-", MEASURED, unit))
    return rows


def history(groups: dict, base: str, head: str, repo: str) -> list:
    """Commit prefixes from `base` to `head`: those on main between them with results, in order;
    just the two where git does not know the order (or `base` comes after `head`)."""
    order = [full[:8] for full in reversed((git(repo, "rev-list", "main") or "").split())]
    order = [p for p in order if p in groups]
    if base in order and head in order and order.index(base) < order.index(head):
        return order[order.index(base):order.index(head) + 1]
    return [base, head]


def regression_checks(runs: list, benchmarks: dict, cfg: dict, limit: float | None, notes: list) -> list:
    """`runs`: {name: Series} of each commit, the baseline first and the checked commit last.  The
    step a metric may take is `limit` where given, else its own threshold (set from the measured
    noise: [regression.max_fraction_by_benchmark]), the one scripts/compare_commits.py applies."""
    rows, current, baseline = [], runs[-1], runs[0]
    for name in sorted(current):
        better = directions.direction(name, benchmarks[name].get("type"), cfg, benchmarks[name].get("unit"))
        if name.rsplit(".", 1)[-1] in cfg["regression"].get("not_compared", []):
            continue
        if better is None:
            notes.append(f"{name}: no known direction (add it to [regression] in the thresholds), not compared")
            continue
        if name not in baseline:
            continue
        for key, new in current[name].values.items():
            old = baseline[name].values.get(key, MISSING)
            if status_of(new, old) is not None or old == 0:
                continue
            series = [run[name].values.get(key) if name in run else None for run in runs]
            series = [v if v is not MISSING else None for v in series]
            params = dict(zip(current[name].param_names, key))
            allowed = limit if limit is not None else regression_threshold(name, params, cfg)
            found = directions.regressions(series, better, allowed)
            label = ", ".join(f"{p}={v}" for p, v in params.items())
            rows.append(Row("regression", f"{name.rsplit('.', 1)[-1]}({label})", new / old - 1,
                            f"{better} is better, worse by <= {allowed:.0%}", FAIL if found else PASS, "change"))
    return rows


def failed_runs(series: dict) -> list:
    found = []
    for s in series.values():
        failed = [key for key, value in s.values.items() if value is None]
        if len(failed) > 1 and len(failed) == len(s.values):  # e.g. its setup_cache failed
            found.append(f"{s.name} (all {len(failed)} parameter sets)")
        else:
            found += [f"{s.name}({', '.join(f'{p}={v}' for p, v in zip(s.param_names, key))})" for key in failed]
    return found


def bottleneck(series: dict, cfg: dict, notes: list) -> list:
    limit, least = float(cfg["bottleneck"]["max_stage_share"]), float(cfg["utilization"]["min_percent"])
    throughput, util = find(series, "track_throughput", notes), find(series, "track_gpu_utilization", notes)
    report = []
    for n in throughput.grid("n_gpus") if throughput else []:
        rates = {s: throughput.get(stage=s, n_gpus=n) for s in cfg["bottleneck"]["stages"]}
        rates = {s: r for s, r in rates.items() if status_of(r) is None and r > 0}
        total = sum(1 / r for r in rates.values())
        for stage, rate in rates.items():
            share, busy = (1 / rate) / total, finite(lookup(util, stage=stage, n_gpus=n))
            flags = [f"over {limit:.0%} of the time"] if share > limit else []
            if busy is not None and busy < least:
                flags.append(f"GPU utilization under {least:g}%")
            report.append({"n_gpus": n, "stage": stage, "throughput": rate, "share": share,
                           "gpu_utilization": busy, "flags": flags})
    return report


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


def amdahl(series: dict, cfg: dict, notes: list) -> dict | None:
    """Amdahl's bound on the speedup of time_predict: the fixed cost of a run (time_startup on one
    GPU) does not shrink with more GPUs, so speedup(n) <= 1 / (s + (1 - s) / n), s = startup / total."""
    startup = lookup(find(series, "time_startup", notes), n_gpus=1)
    total = lookup(find(series, "time_predict", notes), n_gpus=1, persistent_models=True)
    if status_of(startup, total) is not None or not 0 < startup <= total:
        return None
    s = startup / total
    return {"serial_fraction": s, "bound": {n: 1 / (s + (1 - s) / n) for n in sorted({1, *cfg["speedup"]})}}


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


REQUIRED = {"scaling": ["stages"], "utilization": ["min_percent", "stages"],
            "bottleneck": ["max_stage_share", "stages"],
            "regression": ["max_fraction", "higher_is_better", "lower_is_better"]}


def load_thresholds(path: str) -> dict:
    try:
        cfg = tomllib.loads(Path(path).read_text())
        cfg["speedup"] = {int(n): float(v) for n, v in cfg["speedup"].items()}
        cfg["predicted_speedup"] = {int(n): float(v) for n, v in cfg.get("predicted_speedup", {}).items()}
        missing = [f"[{s}] {k}" for s, keys in REQUIRED.items() for k in keys if k not in cfg.get(s, {})]
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot read thresholds {path}: {exc!r}") from exc
    if missing:
        raise DataError(f"thresholds {path} lack {', '.join(missing)}")
    return cfg


def check(args) -> tuple[int, dict, dict]:
    """(exit status, report, speedup curves); raises DataError for exit status 2."""
    cfg = load_thresholds(args.thresholds)
    results = Path(args.results_dir)
    notes: list = []
    groups = commit_files(results, args.machine)
    benchmarks = load_json(results / "benchmarks.json")
    if not isinstance(benchmarks, dict) or benchmarks.get("version") != 2:
        raise DataError(f"{results / 'benchmarks.json'} is not an asv benchmark list of schema version 2")
    benchmarks = {k: v for k, v in benchmarks.items() if isinstance(v, dict)}  # drops the schema "version"
    prefix = select_commit(groups, args.commit, args.repo, notes)
    info, series = load_run(groups[prefix], benchmarks, notes)
    rows, curves = scaling_checks(series, cfg, args.require_gpus, notes, info["commit"])
    rows += utilization_checks(series, cfg, args.require_gpus, notes)
    rows += one_gpu_rows(series, notes)
    baseline = None
    if args.baseline is not None:
        base_prefix = select_commit(groups, args.baseline, args.repo, notes)
        base_info, _ = load_run(groups[base_prefix], benchmarks, notes)
        baseline = base_info["commit"]
        limit = args.max_regression
        commits = history(groups, base_prefix, prefix, args.repo)
        runs = [load_run(groups[p], benchmarks, notes)[1] for p in commits[:-1]] + [series]
        rows += regression_checks(runs, benchmarks, cfg, limit, notes)
    failed = failed_runs(series)
    bad = failed or any(r.status in FAILING for r in rows)
    checked = failed or any(r.status not in (NOT_MEASURED, MEASURED) for r in rows)
    result = "FAIL" if bad else "pass" if checked else NO_THRESHOLD if any(r.status == MEASURED for r in rows) \
        else NOTHING
    report = {"machine": args.machine, "commit": info["commit"], "date": info["date"], "baseline": baseline,
              "rows": rows, "failed_runs": failed, "bottleneck": bottleneck(series, cfg, notes),
              "notes": list(dict.fromkeys(notes)), "result": result, "thresholds": cfg,
              "amdahl": amdahl(series, cfg, notes)}
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
