#!/usr/bin/env python3
"""Run the asv suite over a range of commits with an existing Python (offline GPU hosts).

asv cannot build environments without a package index, so for each commit this
checks the commit out into a temporary `git worktree`, points ASV_PYTHONPATH at it
(asv drops a plain PYTHONPATH) and runs `asv run -E existing:PY --set-commit-hash SHA`.
The benchmarks themselves come from the current checkout, as asv always does.

The machine is registered with fixed keys (gpu, num_gpus, cpu, ...) so that results from
the same kind of host land in one graph even when, say, the CPU string changes.  The software
(driver, torch, CUDA) is written into <results>/<machine>/machine.json after the runs, where the
site shows it, and not into the keys, so that a torch upgrade does not start a new graph.

results/ holds the GPU hosts' history, which the site publishes: a host without a GPU is refused
there and writes with --results-dir elsewhere (`make bench` uses .asv/results, ignored by git).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite import ROOT, asvrun, commits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 usage="%(prog)s RANGE --machine NAME [--python PY] [-- ASV_RUN_ARGS...]")
    ap.add_argument("range", help="commit range 'A..B', 'SHA^!' or a single ref")
    ap.add_argument("--python", default=sys.executable, help="Python with virnucpro's dependencies and asv")
    ap.add_argument("--machine", required=True, help="machine name for the results, e.g. h200-x1")
    ap.add_argument("--machine-file", type=Path, default=Path.home() / ".asv-machine.json")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "results",
                    help="where the results go (default results/, the GPU history: refused without a GPU)")
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = ap.parse_args(argv[:cut]), argv[cut + 1:]  # after --: extra arguments for asv run
    gpu, num_gpus, software = asvrun.gpu_facts(args.python)
    if num_gpus == 0 and args.results_dir.resolve() == (ROOT / "results").resolve():
        print(f"run_history: {args.results_dir} holds the GPU hosts' history and this host has no GPU: "
              "write elsewhere with --results-dir (make bench uses .asv/results)", file=sys.stderr)
        return 2
    print("machine:", asvrun.register_machine(args.machine, gpu, num_gpus, args.machine_file), flush=True)
    config = asvrun.asv_config(args.results_dir)
    failed = [sha for sha in commits.in_range(args.range) if asvrun.run_commit(sha, args.python, args.machine, extra, config) != 0]
    asvrun.record_software(args.results_dir, args.machine, software)
    if failed:
        print(f"asv run failed for {len(failed)} commit(s): {' '.join(s[:8] for s in failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
