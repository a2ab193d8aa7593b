"""Running asv where it cannot build environments (offline GPU hosts, CI): a results folder's
config, a machine registered with fixed keys, the host's GPU software recorded beside the
results, and one commit run from a temporary `git worktree`.

asv has no option for the results folder, and `asv run` (even with --dry-run) rewrites
<results_dir>/benchmarks.json: runs whose results are not the committed GPU history point asv
elsewhere with `asv_config`.  The machine is registered with fixed keys (gpu, num_gpus, cpu, ...)
so that results from the same kind of host land in one graph even when, say, the CPU string
changes; the software (driver, torch, CUDA) goes into <results>/<machine>/machine.json after the
runs, where the site shows it, and not into the keys, so that a torch upgrade starts no new graph.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

from suite import ROOT


def asv_config(results_dir: Path, into: Path = ROOT / ".asv", root: Path = ROOT) -> Path:
    """The asv.conf.json of the checkout `root` with another results_dir; asv reads a config's
    paths relative to its folder, so every path is made absolute."""
    root = Path(root)
    conf = json.loads((root / "asv.conf.json").read_text())
    for key in ("repo", "benchmark_dir", "env_dir", "html_dir"):
        conf[key] = str((root / conf[key]).resolve())
    conf["results_dir"] = str(Path(results_dir).resolve())
    into.mkdir(parents=True, exist_ok=True)
    path = into / f"asv.{Path(results_dir).name}.conf.json"
    path.write_text(json.dumps(conf, indent=2) + "\n")
    return path


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

def git(*args: str, root: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def run_commit(sha: str, python: str, machine: str, asv_args: list[str], config: Path, root: Path = ROOT) -> int:
    """`asv run` of one commit of the repository `root`: checked out into a temporary worktree,
    which ASV_PYTHONPATH puts first (asv drops a plain PYTHONPATH); the benchmarks come from the
    checkout, as asv's do."""
    with tempfile.TemporaryDirectory(prefix="virnucpro-history-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(tree), sha, root=root)
        try:
            # The commit's package first, then whatever the host adds (e.g. carried wheels).
            extra = os.environ.get("PYTHONPATH", "")
            env = {**os.environ, "ASV_PYTHONPATH": os.pathsep.join(p for p in (str(tree), extra) if p)}
            # Samples are kept: they are what a comparison's significance test and the noise table read.
            cmd = [python, "-m", "asv", "--config", str(config), "run", "-E", f"existing:{python}", "--set-commit-hash", sha,
                   "--machine", machine, "--record-samples", *asv_args]
            print(f"== {sha[:8]} {git('log', '-1', '--format=%s', sha, root=root)}", flush=True)
            return subprocess.run(cmd, cwd=root, env=env).returncode
        finally:
            git("worktree", "remove", "--force", str(tree), root=root)
