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
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from asv_local_conf import asv_config  # noqa: E402


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def commits(spec: str) -> list[str]:
    """'A..B' -> the commits after A up to B, oldest first; a single ref -> that commit."""
    if ".." in spec or spec.endswith("^!"):
        return git("rev-list", "--reverse", spec).split()
    return [git("rev-parse", spec)]


def gpu_facts(python: str) -> tuple[str, int, dict]:
    """(GPU name or 'none', GPU count, {torch, cuda, driver}) of the Python that runs the suite."""
    code = ("import torch;n=torch.cuda.device_count();"
            "print(torch.cuda.get_device_name(0) if n else 'none');print(n);"
            "print(torch.__version__);print(torch.version.cuda or '')")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120).stdout.split("\n")
        gpu, n, software = out[0].strip() or "none", int(out[1]), {"torch": out[2].strip(), "cuda": out[3].strip()}
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return "none", 0, {}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60).stdout.split()
        software["driver"] = smi[0] if smi else ""
    except (OSError, subprocess.SubprocessError):
        software["driver"] = ""
    return gpu, n, software


def register_machine(name: str, gpu: str, num_gpus: int, machine_file: Path) -> dict:
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


def record_software(results_dir: Path, machine: str, software: dict) -> None:
    path = results_dir / machine / "machine.json"
    if path.is_file() and software:
        data = json.loads(path.read_text())
        data.update({k: v for k, v in software.items() if v})
        path.write_text(json.dumps(data, indent=4, sort_keys=True) + "\n")


def run_commit(sha: str, python: str, machine: str, asv_args: list[str], config: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="virnucpro-history-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(tree), sha)
        try:
            # The commit's package first, then whatever the host adds (e.g. carried wheels).
            extra = os.environ.get("PYTHONPATH", "")
            env = {**os.environ, "ASV_PYTHONPATH": os.pathsep.join(p for p in (str(tree), extra) if p)}
            # Samples are kept: they are what a comparison's significance test and the noise table read.
            cmd = [python, "-m", "asv", "--config", str(config), "run", "-E", f"existing:{python}", "--set-commit-hash", sha,
                   "--machine", machine, "--record-samples", *asv_args]
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
    ap.add_argument("--results-dir", type=Path, default=ROOT / "results",
                    help="where the results go (default results/, the GPU history: refused without a GPU)")
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = ap.parse_args(argv[:cut]), argv[cut + 1:]  # after --: extra arguments for asv run
    gpu, num_gpus, software = gpu_facts(args.python)
    if num_gpus == 0 and args.results_dir.resolve() == (ROOT / "results").resolve():
        print(f"run_history: {args.results_dir} holds the GPU hosts' history and this host has no GPU: "
              "write elsewhere with --results-dir (make bench uses .asv/results)", file=sys.stderr)
        return 2
    print("machine:", register_machine(args.machine, gpu, num_gpus, args.machine_file), flush=True)
    config = asv_config(args.results_dir)
    failed = [sha for sha in commits(args.range) if run_commit(sha, args.python, args.machine, extra, config) != 0]
    record_software(args.results_dir, args.machine, software)
    if failed:
        print(f"asv run failed for {len(failed)} commit(s): {' '.join(s[:8] for s in failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
