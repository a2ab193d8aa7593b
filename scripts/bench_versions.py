#!/usr/bin/env python3
"""Keep every benchmark's asv `version` tied to what it measures, and to nothing else.

asv draws one series per benchmark and version. Left alone, it hashes a benchmark's source, so
every refactor started a new series and orphaned the history. So each benchmark states its
`version`, and benchmarks/versions.json records, per benchmark, that version and a digest of
its *definition*: what asv knows of what it measures (type, unit, parameters, how it is
sampled) and its module's MEASURES (inputs and method). Then:

- a definition that changed under the same version is an error: bump the version, or the
  site would join two different measurements into one line;
- a version that changed with the same definition is an error: a refactor must not start a
  new series;
- `--update` records the benchmarks whose version and definition changed together (and new
  ones), and refuses the two errors above.

    python scripts/bench_versions.py            # check (exit 1 on a mismatch)
    python scripts/bench_versions.py --update   # record a deliberate change
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "benchmarks" / "versions.json"
# What asv's discovery knows of a benchmark that decides its numbers (its code does not count).
ASV_FIELDS = ("type", "unit", "param_names", "params", "number", "repeat", "rounds", "min_run_count",
              "sample_time", "warmup_time")


def discover(root: Path = ROOT / "benchmarks") -> dict:
    """{name: (explicit version or None, definition dict)} of the suite's benchmarks."""
    from asv_runner.discovery import disc_benchmarks

    sys.path.insert(0, str(root.parent))
    try:
        found = {}
        for bench in disc_benchmarks(str(root)):
            explicit = next((s.version for s in bench._attr_sources if hasattr(s, "version")), None)
            module = sys.modules[bench.func.__module__]
            definition = {f: getattr(bench, f, None) for f in ASV_FIELDS}
            definition["measures"] = getattr(module, "MEASURES", None)
            # a class's own METHOD (how its number is derived), where it states one
            method = next((vars(type(s))["METHOD"] for s in bench._attr_sources if "METHOD" in vars(type(s))), None)
            if method is not None:
                definition["method"] = method
            # a snapshot: MEASURES may hold references to dicts that change later
            found[bench.name] = (None if explicit is None else str(explicit),
                                 json.loads(json.dumps(definition, sort_keys=True, default=repr)))
        return found
    finally:
        sys.path.remove(str(root.parent))


def digest(definition: dict) -> str:
    text = json.dumps(definition, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def problems(current: dict, lock: dict) -> tuple[list, dict]:
    """(errors, the lock as --update would write it)."""
    errors, new_lock = [], {}
    for name, (version, definition) in sorted(current.items()):
        d = digest(definition)
        old = lock.get(name)
        if version is None:
            errors.append(f"{name}: no explicit `version` (asv would hash its source; set version = \"1\")")
        elif old is None or (old["version"] != version and old["definition"] != d):
            new_lock[name] = {"version": version, "definition": d}
            if old is None:
                errors.append(f"{name}: not in {LOCK.name} (new benchmark: --update records it)")
            else:
                errors.append(f"{name}: version {old['version']} -> {version} with a new definition "
                              "(--update records it)")
            continue
        elif old["version"] == version and old["definition"] != d:
            errors.append(f"{name}: what it measures changed (definition {old['definition']} -> {d}) but its "
                          f"version is still {version}: bump the version")
        elif old["version"] != version:
            errors.append(f"{name}: version {old['version']} -> {version} but what it measures did not change: "
                          "keep the version (a refactor must not start a new series)")
        new_lock[name] = old
    errors += [f"{name}: in {LOCK.name} but no longer a benchmark (--update drops it)"
               for name in sorted(set(lock) - set(current))]
    return errors, new_lock


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update", action="store_true", help="record new benchmarks and deliberate version changes")
    args = ap.parse_args(argv)
    lock = json.loads(LOCK.read_text()) if LOCK.is_file() else {}
    errors, new_lock = problems(discover(), lock)
    refused = [e for e in errors if "--update" not in e]
    if args.update and not refused:
        LOCK.write_text(json.dumps(new_lock, indent=1, sort_keys=True) + "\n")
        print(f"{LOCK}: {len(new_lock)} benchmarks recorded")
        return 0
    for e in (refused if args.update else errors):
        print(f"bench_versions: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
