#!/usr/bin/env python3
"""Write the project's asv.conf.json with another results_dir and print the new file's path.

asv has no option for the results folder, and `asv run` (even with --dry-run) rewrites
<results_dir>/benchmarks.json; runs on a machine whose results are not the committed GPU history
(`make bench`, `make bench-smoke`) point asv elsewhere with this:

    asv --config $(python scripts/asv_local_conf.py .asv/results) run ...
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def asv_config(results_dir: Path, into: Path = ROOT / ".asv") -> Path:
    """asv reads a config's paths relative to its folder, so every path is made absolute."""
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    for key in ("repo", "benchmark_dir", "env_dir", "html_dir"):
        conf[key] = str((ROOT / conf[key]).resolve())
    conf["results_dir"] = str(Path(results_dir).resolve())
    into.mkdir(parents=True, exist_ok=True)
    path = into / f"asv.{Path(results_dir).name}.conf.json"
    path.write_text(json.dumps(conf, indent=2) + "\n")
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} RESULTS_DIR", file=sys.stderr)
        raise SystemExit(2)
    print(asv_config(Path(sys.argv[1])))
