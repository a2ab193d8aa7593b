"""Which way is better for each benchmark, and regressions found with asv's own step detection.

asv's detector (asv.step_detect.detect_regressions) only knows "an upward step is worse". A
higher-is-better metric (a rate, MFU, a speedup) is handed to it as its reciprocal, the time per
item, so that asv's relative threshold keeps its meaning: a rate regresses by more than F when
the time per item grows by more than F, as a time does. The site (scripts/publish_site.py) and
`check_thresholds.py --baseline` both call `detect()`, so the two cannot disagree.
"""
from __future__ import annotations

import math

HIGHER, LOWER = "higher", "lower"


def direction(name: str, kind: str | None, cfg: dict, unit: str = "") -> str | None:
    """'higher', 'lower' or None (unknown) for benchmark `name` of asv type `kind`, from the
    [regression] table of benchmarks/thresholds.toml; asv's time and memory types are
    lower-is-better, and a rate (a unit per second) higher-is-better unless listed."""
    method = name.split("(", 1)[0].rsplit(".", 1)[-1]
    if method in cfg["regression"]["higher_is_better"]:
        return HIGHER
    if method in cfg["regression"]["lower_is_better"] or kind in ("time", "mem", "peakmem"):
        return LOWER
    if (unit or "").endswith("/s"):
        return HIGHER
    return None


def usable(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def detect(values: list, better: str, threshold: float):
    """asv's (latest value, best value, [(index before, index after, value before, best value
    after)]) for the steps of `values` (oldest first; None or NaN for missing) that left the
    series worse, in the original units; None when there are none.  The index before is the last
    point at the old level; the value after is the best one after the step."""
    from asv.step_detect import detect_regressions, detect_steps  # only here: check_thresholds runs without asv

    if better == HIGHER:
        oriented = [1 / v if usable(v) and v > 0 else None for v in values]
    else:
        oriented = [v if usable(v) else None for v in values]
    if sum(v is not None for v in oriented) < 2:
        return None
    last, best, jumps = detect_regressions(detect_steps(oriented), threshold)
    if not jumps:
        return None
    back = (lambda v: 1 / v) if better == HIGHER else (lambda v: v)
    return back(last), back(best), [(a, b, back(before), back(after)) for a, b, before, after in jumps]


def regressions(values: list, better: str, threshold: float) -> list:
    """The steps of detect(): empty when the series did not get worse."""
    found = detect(values, better, threshold)
    return found[2] if found else []
