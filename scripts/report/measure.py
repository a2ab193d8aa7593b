"""gpu_report's measurements: a stage alone as the asv suite samples it, its kernels, a run end
to end in this process, and whether `--resume` after a kill reproduces an uninterrupted run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks import common, sampling
from report import ROOT
from virnucpro import faults, owned, perf, pipeline, settings
from virnucpro.fasta import read_fasta

DNABERT_REPEAT = 8  # the genome's ORFs once make a 0.3 s stage: too short to sample utilisation


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def stage_alone(stage, embedder, seqs, peak):
    """The stage sampled as the asv suite samples it (benchmarks/sampling.py): medians of >= 5
    passes, NVML read >= 100 times, the profiler's kernel-busy share of one more pass."""
    perf.warm_up(embedder, seqs)
    graphs = perf.compiled_graphs()
    r = sampling.monitored_stage(stage, embedder, seqs)
    d = {"stage": stage, "items": len(seqs), "samples": len(r["seconds"]),
         "seconds": float(np.median(r["seconds"])),
         **{k: float(np.median(r[k])) for k in ("items_per_second", "tokens_per_second")},
         "mfu": float(np.median(r["flops_per_second"])) / peak,
         "gpu_util_percent": float(np.mean(r["gpu_util_percent"])) if "gpu_util_percent" in r else float("nan"),
         **{k: r[k] for k in ("nvml_samples", "kernel_busy_percent", "peak_memory_bytes") if k in r}}
    d["batch_tokens"], d["graphs_compiled_in_clock"] = embedder.batch_tokens, perf.compiled_graphs() - graphs
    log(f"{stage}: {d['items_per_second']:.0f} ORFs/s, {d['tokens_per_second']:.0f} tok/s, "
        f"MFU {d['mfu']:.3f}, util {d['gpu_util_percent']:.1f}%")
    return d


def measure_stage(report: dict, stage: str, embedder, seqs, peak, unfused: bool, profile_items: int) -> None:
    """The stage alone, its kernel profile, and optionally the same with the fusions off."""
    report[stage] = stage_alone(stage, embedder, seqs, peak)
    report[f"{stage}_kernels"] = kernel_profile(embedder, seqs[:profile_items])
    if unfused:
        with settings.override(fused=False):
            report[f"{stage}_unfused"] = stage_alone(stage, embedder, seqs, peak)


def kernel_profile(embedder, seqs, top: int = 12) -> dict:
    """Where one embedding run's GPU time goes: the top kernels and their share (torch.profiler)."""
    if embedder.device.type != "cuda":
        return {}
    from torch.profiler import ProfilerActivity, profile

    tokens = embedder.token_lists(seqs)
    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            embedder.embed_tokens(tokens)
            torch.cuda.synchronize()
        kernels: dict = {}
        for e in prof.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                kernels[e.name] = kernels.get(e.name, 0.0) + e.device_time
        total = sum(kernels.values())
        ranked = sorted(kernels.items(), key=lambda kv: -kv[1])
        d = {"tokens": sum(map(len, tokens)), "gpu_ms": total / 1e3,
             "top": [{"kernel": k[:160], "ms": v / 1e3, "share": v / total} for k, v in ranked[:top]]}
    except Exception as e:  # the profiler's API moves between releases; the rest of the report matters more
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    log(f"kernels: {json.dumps(d['top'][:6])}")
    return d


def save(report: dict, out: str) -> None:
    """Written after every section, so a run cut short still leaves what it measured."""
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "gpu_report.json").write_text(json.dumps(report, indent=2) + "\n")


def empty_cache(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1).numpy()


def end_to_end(paths, models, opts, label, min_seconds=0.0, monitored=True):
    """predict in this process, models already loaded: ORFs/s from reading to written results.
    The speedup runs go without the NVML sampling thread, as in the asv benchmark, so that both
    time the same thing (the reference engine's one-sequence steps are bound by kernel launches,
    which a second Python thread can slow)."""
    out = Path(tempfile.mkdtemp(prefix="virnucpro-e2e-"))
    monitor = perf.start_monitor() if monitored else None
    d = common.predict_in_process(paths, models, opts, out, monitor, min_seconds)
    util = monitor.get_average_utilization(stage="embedding") if monitor else float("nan")
    if monitor:
        monitor.stop()
    copies = d["files"]
    d.update(label=f"{label} x{copies}" if copies > 1 else label, orfs_per_second=d["orfs"] / d["seconds"],
             esm_tokens_per_second=d["esm_tokens"] / d["seconds"], gpu_util_embedding_percent=util)
    log(f"e2e {label}: {d['orfs']} ORFs in {d['seconds']:.1f}s = {d['orfs_per_second']:.0f} ORFs/s, util {util:.1f}%")
    return d


def resume_check(path: Path, dev: torch.device, preset: str, ranges: int = 5, saved: int = 2) -> dict:
    """`predict` as a user runs it (one process each): uninterrupted, then killed with SIGKILL
    after `saved` of `ranges` checkpointed ranges and resumed.  Which promised files differ?"""
    data = pipeline.InputData(path, read_fasta(path)[0], [])
    pipeline.prepare(data, 500, pipeline.StageClock())
    every = -(-data.chunk_count(500) // ranges)  # ranges are spans of chunks
    root = Path(tempfile.mkdtemp(prefix="virnucpro-resume-"))
    cmd = [sys.executable, "-m", "virnucpro", "predict", str(path), "-l", "500", "--random-weights", "--preset",
           preset, "--device", dev.type, "--no-progress", "--keep-intermediate", "--checkpoint-every", str(every)]

    def run(out, *extra, fault=""):
        env = {**os.environ, faults.ENV: fault}  # an empty value injects nothing
        p = subprocess.run([*cmd, "-o", str(root / out), *extra], env=env, cwd=ROOT, capture_output=True, text=True)
        return p.returncode, p.stderr[-500:]

    # The ESM-2 step of range saved+1 is the kill point: its DNABERT-S rows are lost with it.
    runs = {"uninterrupted": run("whole"), "killed": run("resumed", fault=f"esm2:{saved + 1}"),
            "resumed": run("resumed", "--resume")}
    d = {"input": path.name, "orfs": len(data.orfs), "ranges": ranges,
         "return_codes": {k: rc for k, (rc, _) in runs.items()}}
    if [rc for rc, _ in runs.values()] != [0, -9, 0]:
        d["error"] = {k: err for k, (rc, err) in runs.items()}
        return d
    stem = pipeline.output_stem(path)
    a, b = root / "whole" / stem, root / "resumed" / stem
    d["reused_ranges"] = json.loads((b / "run.json").read_text())["checkpoint"]["reused"]
    d["ranges"] = json.loads((b / "run.json").read_text())["checkpoint"]["ranges"]
    # --resume promises every result file byte-identical but run.json and the folder's marker,
    # which names the run (docs/RELIABILITY.md).
    names = sorted({str(p.relative_to(top)) for top in (a, b) for p in top.rglob("*") if p.is_file()}
                   - {"run.json", owned.MARKER})
    d["files_compared"] = len(names)
    d["files_differing"] = [f for f in names if not ((a / f).is_file() and (b / f).is_file()
                                                     and (a / f).read_bytes() == (b / f).read_bytes())]
    fa, fb = np.load(a / "intermediate" / "features.npy"), np.load(b / "intermediate" / "features.npy")
    d["feature_rows_differing"] = int((fa != fb).any(axis=1).sum())
    log(f"resume: {json.dumps(d)}")
    return d


def repeated_genome(root: Path, profile: str):
    """The chromosome again and again, one file per copy (records renamed so ids stay unique)."""
    w = common.workload(profile)
    records = [rec for f in w["files"][:-1] for rec in read_fasta(f)[0]]
    for k in range(1, 10_000):
        dst = root / f"genome_copy{k}.fna"
        with open(dst, "w") as out:
            out.writelines(f">{rec.id}_copy{k}\n{rec.seq}\n" for rec in records)
        yield str(dst)
