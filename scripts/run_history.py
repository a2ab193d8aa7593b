#!/usr/bin/env python3
"""Run the asv suite over a range of commits with an existing Python (offline GPU hosts).

asv cannot build environments without a package index, so for each commit this
checks the commit out into a temporary `git worktree`, points ASV_PYTHONPATH at it
(asv drops a plain PYTHONPATH) and runs `asv run -E existing:PY --set-commit-hash SHA`.
The benchmarks themselves come from the current checkout, as asv always does.

The machine is registered with fixed keys (gpu, num_gpus, cpu, ...) so that results from
the same kind of host land in one graph even when, say, the CPU string changes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def commits(spec: str) -> list[str]:
    """'A..B' -> the commits after A up to B, oldest first; a single ref -> that commit."""
    if ".." in spec or spec.endswith("^!"):
        return git("rev-list", "--reverse", spec).split()
    return [git("rev-parse", spec)]


def gpu_facts(python: str) -> tuple[str, int]:
    code = ("import torch;n=torch.cuda.device_count();"
            "print(torch.cuda.get_device_name(0) if n else 'none');print(n)")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120).stdout.split("\n")
        return out[0].strip() or "none", int(out[1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return "none", 0


def register_machine(name: str, python: str, machine_file: Path) -> dict:
    gpu, num_gpus = gpu_facts(python)
    info = {
        "machine": name, "os": platform.system(), "arch": platform.machine(),
        # Stable, coarse values only: a changing CPU string or RAM figure would split the graphs.
        "cpu": f"{os.cpu_count()} cores", "num_cpu": str(os.cpu_count()), "ram": "",
        "gpu": gpu, "num_gpus": str(num_gpus),
    }
    data = json.loads(machine_file.read_text()) if machine_file.exists() else {}
    data[name] = info
    data["version"] = 1
    machine_file.write_text(json.dumps(data, indent=4) + "\n")
    return info


def run_commit(sha: str, python: str, machine: str, asv_args: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="virnucpro-history-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(tree), sha)
        try:
            # The commit's package first, then whatever the host adds (e.g. carried wheels).
            extra = os.environ.get("PYTHONPATH", "")
            env = {**os.environ, "ASV_PYTHONPATH": os.pathsep.join(p for p in (str(tree), extra) if p)}
            cmd = [python, "-m", "asv", "run", "-E", f"existing:{python}", "--set-commit-hash", sha,
                   "--machine", machine, *asv_args]
            print(f"== {sha[:8]} {git('log', '-1', '--format=%s', sha)}", flush=True)
            return subprocess.run(cmd, cwd=ROOT, env=env).returncode
        finally:
            git("worktree", "remove", "--force", str(tree))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 usage="%(prog)s RANGE --machine NAME [--python PY] [-- ASV_RUN_ARGS...]")
    ap.add_argument("range", help="commit range 'A..B', 'SHA^!' or a single ref")
    ap.add_argument("--python", default=sys.executable, help="Python with virnucpro's dependencies and asv")
    ap.add_argument("--machine", required=True, help="machine name for the results, e.g. h200-x1")
    ap.add_argument("--machine-file", type=Path, default=Path.home() / ".asv-machine.json")
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = ap.parse_args(argv[:cut]), argv[cut + 1:]  # after --: extra arguments for asv run
    print("machine:", register_machine(args.machine, args.python, args.machine_file), flush=True)
    failed = [sha for sha in commits(args.range) if run_commit(sha, args.python, args.machine, extra) != 0]
    if failed:
        print(f"asv run failed for {len(failed)} commit(s): {' '.join(s[:8] for s in failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
