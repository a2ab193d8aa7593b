"""gpu_report's sections on a run as a user meets it: `virnucpro predict` from the command
line, one process each, timed from outside, with the milestones of virnucpro/trace.py.

The fixed cost of a run is its wall time minus its ESM-2 stage seconds, the one part that is
real work at the engine's MFU.  The metagenome-like and read inputs are compared with the
ESM-2-alone rate measured on a sample of their own ORFs."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import datasets
from report import ROOT
from virnucpro import trace
from virnucpro.fasta import read_fasta
from virnucpro.inputs import InputData, StageClock, prepare

# (milestone, the one before it in the same or the main process, what the interval holds)
STEPS = [("inputs_read", "process_start", "interpreter, imports, reading and validating the inputs"),
         ("torch_imported", "inputs_read", "import torch and the engine"),
         ("worker_start", "torch_imported", "spawning the worker"),
         ("process_group", None, "worker imports and process group (in-process: commit id, fingerprint, lock)"),
         ("cuda_context", "process_group", "CUDA context"),
         ("models_loaded", "cuda_context", "model weights (all three)"),
         ("dnabert_range_done", "models_loaded", "first DNABERT-S range (compilation included)"),
         ("esm2_range_done", "dnabert_range_done", "first ESM-2 range"),
         ("results_written", "esm2_range_done", "from the first ESM-2 range to the results written"),
         ("exit", "results_written", "up to the exit call")]


def write_fasta(path: Path, records) -> str:
    with open(path, "w") as f:
        f.writelines(f">{rid}\n{seq}\n" for rid, seq in records)
    return str(path)


def cli_run(inputs, preset: str, device: str, extra=(), fresh_caches: bool = False) -> dict:
    """One `python -m virnucpro predict` in its own process: wall time seen from outside, the
    intervals between its milestones, and run.json's stage seconds summed over the inputs."""
    root = Path(tempfile.mkdtemp(prefix="virnucpro-cli-"))
    env = {**os.environ, trace.ENV: str(root / "trace.txt")}
    if fresh_caches:  # a node that never ran this code: no Inductor or Triton kernels on disk
        env.update(TORCHINDUCTOR_CACHE_DIR=str(root / "inductor"), TRITON_CACHE_DIR=str(root / "triton"))
    cmd = [sys.executable, "-m", "virnucpro", "predict", *map(str, inputs), "-l", "500", "--random-weights",
           "--preset", preset, "--device", device, "--no-progress", "-o", str(root / "out"), *extra]
    t0 = time.time()
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    t1 = time.time()
    d = {"command": " ".join(cmd[3:]), "rc": p.returncode, "wall_seconds": t1 - t0}
    if p.returncode != 0:
        d["stderr"] = p.stderr[-1500:]
        return d
    runs = [json.loads(f.read_text()) for f in (root / "out").glob("*/run.json")]
    seconds: dict = {}
    for r in runs:
        for k, v in r["seconds"].items():
            if isinstance(v, (int, float)):
                seconds[k] = seconds.get(k, 0.0) + v
    d.update(orfs=sum(r["counts"]["orfs"] for r in runs), stage_seconds=seconds,
             startup_seconds=min(r["startup_seconds"] for r in runs),
             compiled_graphs=max(r.get("compiled_graphs", 0) for r in runs))
    d["fixed_seconds"] = d["wall_seconds"] - seconds.get("esm2", 0.0)
    d["orfs_per_second"] = d["orfs"] / d["wall_seconds"]
    d["milestones"] = milestones(trace.read(root / "trace.txt"), t0, t1)
    return d


# Process start times come from /proc (trace.process_started_unix), to within two 10 ms clock
# ticks: an interval that ends at one can read a few ms below zero when nothing happened in it.
PROC_CLOCK_SECONDS = 0.03


def _interval(seconds: float) -> float:
    return 0.0 if -PROC_CLOCK_SECONDS < seconds < 0 else seconds


def milestones(events, launched: float, ended: float) -> dict:
    """Seconds per step of STEPS (first occurrence of each milestone), plus the parent's view:
    from launching the command to its process start, and from the exit call to the process end."""
    first: dict = {}
    for _, name, t, *_ in events:
        first.setdefault(name, t)
    out = {"launch to process start": _interval(first.get("process_start", launched) - launched)}
    for name, before, label in STEPS:
        if name not in first:
            continue
        prev = before if before in first else ("torch_imported" if name == "process_group" and
                                               "worker_start" not in first else "worker_start")
        if prev in first:
            out[label] = _interval(first[name] - first[prev])
    last = max((t for _, name, t, *_ in events if name == "exit"), default=None)
    if last is not None:
        out["exit call to process end"] = ended - last
    return out


def esm_alone_rate(embedder, orfs, sample: int, seed: int = 0) -> float:
    """ESM-2 ORFs/s on a random sample of these ORFs (warmed up first)."""
    from virnucpro import perf

    seqs = [o.protein for o in random.Random(seed).sample(orfs, min(sample, len(orfs)))]
    perf.warm_up(embedder, seqs)
    r = perf.run_embed_stage("esm2", embedder, seqs, None)
    return r.items / r.seconds


def user_view(preset: str, device: str, genome_records, metagenome_bp: int, n_reads: int, esm_sample: int,
              reference: bool, log=print) -> dict:
    """The issue's user-view rows: genome CLI wall (and the reference engine's), 10 reads (warm
    and with empty kernel caches, in-process and --gpus 1), metagenome-like and read inputs as a
    fraction of ESM-2 alone."""
    from virnucpro import embed

    root = Path(tempfile.mkdtemp(prefix="virnucpro-user-"))
    genome = write_fasta(root / "genome.fna", [(r.id, r.seq) for r in genome_records])
    reads = datasets.reads(n_reads, seed=7)
    few = write_fasta(root / "few_reads.fna", reads[:10])
    meta = write_fasta(root / "metagenome.fna", datasets.metagenome(metagenome_bp, seed=11))
    many = write_fasta(root / "reads.fna", reads)
    gpus = ["--gpus", "1"] if device == "cuda" else ["--cpu-workers", "1"]
    r: dict = {}
    for key, inputs, extra, fresh in (("few_reads_warm", [few], (), False), ("few_reads_warm_gpus1", [few], gpus, False),
                                      ("few_reads_fresh_caches_gpus1", [few], gpus, True),
                                      ("genome_cli", [genome], (), False),
                                      ("metagenome_cli", [meta], (), False), ("reads_cli", [many], (), False)):
        r[key] = cli_run(inputs, preset, device, extra, fresh)
        log(f"{key}: {json.dumps({k: v for k, v in r[key].items() if k != 'stage_seconds'})[:600]}")
    if reference:
        r["genome_cli_reference"] = cli_run([genome], preset, device, ("--engine", "reference"))
        if r["genome_cli_reference"]["rc"] == 0 and r["genome_cli"]["rc"] == 0:
            r["genome_cli_speedup"] = r["genome_cli_reference"]["wall_seconds"] / r["genome_cli"]["wall_seconds"]
    esm = embed.load_protein_model(f"random:{preset}", device, "bf16" if device == "cuda" else "fp32")
    for key, path in (("metagenome_cli", meta), ("reads_cli", many)):
        data = InputData(Path(path), read_fasta(path)[0], [])
        prepare(data, 500, StageClock())
        if r[key]["rc"] == 0:
            alone = esm_alone_rate(esm, data.orfs, esm_sample)
            r[key].update(esm_alone_orfs_per_second=alone, fraction_of_esm_alone=r[key]["orfs_per_second"] / alone)
    return r


def rows(r: dict) -> list[tuple[str, str, str]]:
    out = []
    g, ref = r.get("genome_cli", {}), r.get("genome_cli_reference", {})
    if g.get("rc") == 0:
        speed = f", {r['genome_cli_speedup']:.1f}x the reference engine's {ref['wall_seconds']:.0f} s" \
            if "genome_cli_speedup" in r else ""
        out.append(("genome, CLI", f"{g['wall_seconds']:.1f} s wall, fixed cost {g['fixed_seconds']:.1f} s{speed}",
                    "fixed <= 3.5 s, >= 13x reference"))
    for key, label in (("few_reads_warm", "10 reads in-process"), ("few_reads_warm_gpus1", "10 reads --gpus 1"),
                       ("few_reads_fresh_caches_gpus1", "10 reads --gpus 1, empty caches")):
        if r.get(key, {}).get("rc") == 0:
            out.append((label, f"{r[key]['wall_seconds']:.1f} s", "<= 5 s warm, <= 10 s fresh"))
    for key, label, target in (("metagenome_cli", "metagenome-like, CLI", ">= 92% of ESM alone"),
                               ("reads_cli", "150 bp reads, CLI", ">= 90% of ESM alone")):
        d = r.get(key, {})
        if "fraction_of_esm_alone" in d:
            out.append((label, f"{d['orfs_per_second']:.0f} ORFs/s = {d['fraction_of_esm_alone']:.0%} of ESM alone "
                        f"({d['orfs']} ORFs, {d['wall_seconds']:.1f} s)", target))
    return out
