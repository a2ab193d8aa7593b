"""benchmarks/thresholds.toml: the suite's targets and each metric's regression threshold.

[regression] max_fraction holds unless [regression.max_fraction_by_benchmark] overrides it:
    "track_throughput" = 0.03                          # all its parameter combinations
    "track_throughput(stage='esm2', n_gpus=1)" = 0.02  # some parameters, as Python literals
keyed by method name (the last dotted part of the asv name); of the matching keys the one naming
most parameters wins, then the smaller value.  Every tool judges a metric by regression_threshold.
"""
from __future__ import annotations

import ast
from pathlib import Path

from suite.results import DataError, method_of

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# what every reader needs: directions.direction reads all three
REGRESSION = {"regression": ["max_fraction", "higher_is_better", "lower_is_better"]}


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
    decoded as Python literals}) under the thresholds `cfg` (see the module docstring)."""
    table = cfg["regression"].get("max_fraction_by_benchmark", {})
    best = None  # (parameters named, -threshold): more specific first, then stricter
    for key, value in table.items():
        method, wanted = parse_key(key)
        if method == method_of(name) and all(k in params and params[k] == v for k, v in wanted.items()):
            best = max(best or (-1, 0.0), (len(wanted), -float(value)))
    return -best[1] if best else float(cfg["regression"]["max_fraction"])


def load(path, required: dict = REGRESSION) -> dict:
    """The thresholds file, with `required` ({section: [keys]}) present and every per-metric key
    well formed (a malformed key is an error now, not a silently unmatched one later)."""
    try:
        cfg = tomllib.loads(Path(path).read_text())
        if "speedup" in cfg:
            cfg["speedup"] = {int(n): float(v) for n, v in cfg["speedup"].items()}
        cfg["predicted_speedup"] = {int(n): float(v) for n, v in cfg.get("predicted_speedup", {}).items()}
        missing = [f"[{s}] {k}" for s, keys in required.items() for k in keys if k not in cfg.get(s, {})]
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot read thresholds {path}: {exc!r}") from exc
    if missing:
        raise DataError(f"thresholds {path} lack {', '.join(missing)}")
    for key in cfg.get("regression", {}).get("max_fraction_by_benchmark", {}):
        parse_key(key)
    return cfg
