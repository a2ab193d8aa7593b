"""One commit's results against benchmarks/thresholds.toml: rows of speedup, utilisation, the
one-GPU figures every speedup divides by, regressions against a baseline, failed runs, the
bottleneck shares and Amdahl's bound.  check_thresholds.py renders and gates on them.

Bottleneck shares assume every stage's track_throughput counts the same items (input sequences),
so a stage's time per item is 1/throughput and its share is that over the sum across stages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from suite import directions
from suite.results import MISSING, Series, find
from suite.thresholds import regression_threshold

PASS, FAIL, FAILED_RUN, NOT_MEASURED = "pass", "FAIL", "failed run", "not measured"
MEASURED = "measured"  # a figure with no threshold of its own (one GPU), shown so that it is seen
REQUIRED_MISSING = "required, not measured"
FAILING = (FAIL, FAILED_RUN, REQUIRED_MISSING)


@dataclass
class Row:
    check: str
    metric: str
    value: float | None
    threshold: str
    status: str
    unit: str = ""
    detail: str = ""


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


def amdahl(series: dict, cfg: dict, notes: list) -> dict | None:
    """Amdahl's bound on the speedup of time_predict: the fixed cost of a run (time_startup on one
    GPU) does not shrink with more GPUs, so speedup(n) <= 1 / (s + (1 - s) / n), s = startup / total."""
    startup = lookup(find(series, "time_startup", notes), n_gpus=1)
    total = lookup(find(series, "time_predict", notes), n_gpus=1, persistent_models=True)
    if status_of(startup, total) is not None or not 0 < startup <= total:
        return None
    s = startup / total
    return {"serial_fraction": s, "bound": {n: 1 / (s + (1 - s) / n) for n in sorted({1, *cfg["speedup"]})}}
