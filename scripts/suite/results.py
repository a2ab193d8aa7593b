"""asv's files as the tools read them (results schema 2, asv 0.6): results/benchmarks.json and
results/<machine>/<commit[:8]>-<env>.json.  In a result row a benchmark that raised
NotImplementedError (skipped, e.g. fewer GPUs than asked for) is NaN; one that raised anything
else is null (a failed run).  A result of another benchmark version than benchmarks.json's (asv's
rule) measures older code and is set aside, named in the caller's notes."""
from __future__ import annotations

import ast
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

MISSING = object()  # no result row at all for these parameters


class DataError(Exception):
    """The results cannot be read or used (the tools' exit 2)."""


class StaleError(DataError):
    """Every result of a commit was measured under other benchmark versions."""


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def benchmark_list(results_dir: Path) -> dict:
    """benchmarks.json: {name: asv's description of the benchmark}."""
    path = Path(results_dir) / "benchmarks.json"
    data = read_json(path)
    if not isinstance(data, dict) or data.get("version") != 2:
        raise DataError(f"{path} is not an asv benchmark list of schema version 2")
    return {k: v for k, v in data.items() if isinstance(v, dict)}  # drops the schema "version"


def commit_files(results_dir: Path, machine: str) -> dict:
    """Result files of the machine, grouped by the 8-character commit prefix of their name."""
    folder = Path(results_dir) / machine
    groups: dict = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name != "machine.json":
            groups.setdefault(path.name.split("-")[0], []).append(path)
    if not groups:
        raise DataError(f"no results for machine {machine!r} in {folder}")
    return groups


def decode(param: str):
    """asv stores parameter values as their repr: "1", "True", "'dnabert'"."""
    try:
        return ast.literal_eval(param)
    except (ValueError, SyntaxError):
        return param


def method_of(name: str) -> str:
    """'bench_stages.TrackMFU.track_mfu(...)' -> 'track_mfu'."""
    return name.split("(", 1)[0].rsplit(".", 1)[-1]


@dataclass
class Series:
    """One benchmark's results in one commit: decoded parameter tuple (in param_names order) ->
    value; beside it asv's statistics and samples where recorded, and the parameters as asv wrote them."""
    name: str
    param_names: list
    values: dict
    stats: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    written: dict = field(default_factory=dict)

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

    def label(self, key) -> str:
        """'stage='esm2', n_gpus=1': the parameters of `key` as asv wrote them."""
        return ", ".join(f"{n}={v}" for n, v in zip(self.param_names, self.written[key]))


def _columns(data: dict, name: str, row: list) -> dict:
    entry = dict(zip(data["result_columns"], row))
    combos = list(itertools.product(*(entry.get("params") or [])))
    stats: list = [{} for _ in combos]
    for column, values in entry.items():
        if column.startswith("stats_") and values is not None:
            for j, v in enumerate(values):
                if v is not None:
                    stats[j][column[len("stats_"):]] = v
    entry["stats"], entry["combos"] = [s or None for s in stats], combos
    return entry


def load_commit(paths: list, benchmarks: dict) -> tuple[dict, dict, dict]:
    """(commit info, {name: Series}, {file name: [stale benchmark names]}) from the result files
    of one commit (one per environment); of a benchmark in several, the one run last."""
    entries, info, stale = {}, {}, {}
    for path in paths:
        data = read_json(path)
        if not isinstance(data, dict) or data.get("version") != 2 or "result_columns" not in data:
            raise DataError(f"{path} is not an asv results file of schema version 2")
        info = {"commit": data.get("commit_hash"), "date": data.get("date")}
        for name, row in data.get("results", {}).items():
            entry = _columns(data, name, row)
            meta = benchmarks.get(name)
            if meta is None or entry.get("version") not in (None, meta.get("version")) \
                    or len(entry.get("params") or []) != len(meta.get("param_names", [])):
                stale.setdefault(Path(path).name, []).append(name)
            elif (entries.get(name, {}).get("started_at") or 0) <= (entry.get("started_at") or 0):
                entries[name] = entry
    series = {}
    for name, entry in entries.items():
        keys = [tuple(decode(p) for p in combo) for combo in entry["combos"]]
        result = entry.get("result")
        result = [None] * len(keys) if result is None else result  # asv writes a wholly failed benchmark as null
        samples = entry.get("samples") or [None] * len(keys)
        series[name] = Series(name, list(benchmarks[name]["param_names"]), dict(zip(keys, result)),
                              dict(zip(keys, entry["stats"])), dict(zip(keys, samples)),
                              dict(zip(keys, entry["combos"])))
    return info, series, stale


def find(series: dict, method: str, notes: list) -> Series | None:
    """The benchmark whose name ends in `method`, whatever module or class holds it."""
    names = sorted(n for n in series if method_of(n) == method)
    if len(names) > 1:
        notes.append(f"several benchmarks named {method}: used {names[0]}")
    return series[names[0]] if names else None
