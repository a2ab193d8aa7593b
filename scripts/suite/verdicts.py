"""Two commits compared metric by metric: the ratio of medians, which way is better, the metric's
threshold and whether the samples differ significantly -> a verdict.

A higher-is-better metric is judged by its reciprocal: "worse by F" is head/base - 1 > F (lower
is better) or base/head - 1 > F (higher).
  REGRESSION       worse by more than the threshold AND asv._stats.is_different finds it significant
                   (Mann-Whitney U p < 0.002 with enough samples, else disjoint 99% CIs)
  improved         better by more than the threshold, and significant
  not significant  worse (or better) by more than the threshold, but not significant
  no change        within the threshold;  FAILED  ran in BASE, failed in HEAD
  n/a              on one side only, skipped, no known direction or a zero value
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from suite import commits, directions, results
from suite.results import DataError, method_of
from suite.thresholds import regression_threshold

REGRESSION, IMPROVED, NOT_SIGNIFICANT, NO_CHANGE, FAILED, NA = (
    "REGRESSION", "improved", "not significant", "no change", "FAILED", "n/a")
P_THRESHOLD = 0.002  # asv._stats.is_different's default, stated here for the report
finite = directions.usable  # a number, not NaN or infinite


@dataclass
class Measurement:
    params: dict      # decoded parameter values
    value: float | None  # asv's result: the median; None a failed run, NaN a skipped one
    stats: dict | None
    samples: list | None


def load(results_dir, machine: str, commit: str) -> tuple[str, dict, dict, list]:
    """(full commit hash, benchmarks.json entries, {(name, params label): Measurement}, notes)."""
    results_dir = Path(results_dir)
    meta = results.benchmark_list(results_dir)
    prefix = commits.resolve(commit)[:8]
    folder = results_dir / machine
    try:
        groups = results.commit_files(results_dir, machine)
    except DataError:  # none at all
        groups = {}
    groups = {p: paths for p, paths in groups.items() if p.startswith(prefix)}
    if len(groups) != 1:
        raise DataError(f"{len(groups) or 'no'} result sets match commit {commit!r} in {folder}")
    info, series, stale = results.load_commit(next(iter(groups.values())), meta)
    notes = [f"{name}: ignored {len(names)} result(s) of another benchmark version: " + ", ".join(sorted(names))
             for name, names in stale.items()]
    rows = {}
    for name, s in series.items():
        for key, value in s.values.items():
            rows[(name, s.label(key))] = Measurement(dict(zip(s.param_names, key)), value, s.stats.get(key),
                                                     s.samples.get(key))
    return info["commit"], meta, rows, notes


def pooled(loaded: list) -> tuple[str, dict, dict, list]:
    """load() of several separate runs of one commit as one: their samples together, the median
    and asv's statistics computed again (a row without samples keeps the first run's)."""
    from asv_runner.statistics import compute_stats

    sha, meta, rows, notes = loaded[0]
    rows = dict(rows)  # the runs handed in stay as they were
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


def judge(row: dict, a: Measurement, b: Measurement, better: str | None) -> None:
    """Fills row's change, p-value, test, verdict and note from the two measurements."""
    if b.value is None and finite(a.value):
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
                row["note"] = f"{'worse' if worse > 0 else 'better'} by {max(worse, better_by):.1%} > {limit:.1%}, not significant"
        else:
            row["verdict"] = NO_CHANGE


def compare(base: dict, head: dict, meta: dict, cfg: dict) -> list[dict]:
    """One row per benchmark and parameters measured on either side (load()'s rows)."""
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
        else:
            judge(row, a, b, better)
    return rows
