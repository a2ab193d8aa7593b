#!/usr/bin/env python3
"""Write the project's asv.conf.json with another results_dir and print the new file's path.

asv has no option for the results folder, and `asv run` (even with --dry-run) rewrites
<results_dir>/benchmarks.json; runs on a machine whose results are not the committed GPU history
(`make bench`, `make bench-smoke`) point asv elsewhere with this:

    asv --config $(python scripts/asv_local_conf.py .asv/results) run ...
"""
from __future__ import annotations

import sys
from pathlib import Path

from suite.asvrun import asv_config

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} RESULTS_DIR", file=sys.stderr)
        raise SystemExit(2)
    print(asv_config(Path(sys.argv[1])))
