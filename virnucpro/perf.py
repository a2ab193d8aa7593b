"""Measurement helpers shared by the asv suite and scripts/gpu_report.py: FLOP counts,
the matmul peak of this device, and one timed, monitored run of an embedding stage."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matrix products per token (embedding tables excluded)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def forward_flops(model: torch.nn.Module, lengths, layers: int, hidden: int) -> float:
    """2 x matmul parameters per token plus attention (QK^T and PV: 4 x n^2 x hidden per layer)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    return float(2.0 * matmul_params(model) * lengths.sum() + 4.0 * layers * hidden * (lengths ** 2).sum())


def compiled_graphs() -> int:
    """Graphs Dynamo has compiled in this process so far: a recompile between two readings shows
    as a difference.  0 without importing Dynamo where nothing has imported it (nothing compiled)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def measure_peak_flops(device: torch.device, n: int = 8192, iters: int = 10) -> float:
    """bf16 matmul rate on random data, measured now on this device (the MFU denominator)."""
    if torch.device(device).type != "cuda":
        raise NotImplementedError("the bf16 matmul peak is measured on a GPU only")
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=gen)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=gen)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    return 2.0 * n ** 3 * iters / (start.elapsed_time(end) / 1e3)


@dataclass
class StageResult:
    stage: str
    items: int
    tokens: int
    seconds: float
    flops: float
    gpu_util_percent: float = float("nan")
    peak_memory_bytes: float = float("nan")

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    def mfu(self, peak_flops: float) -> float:
        return self.flops / self.seconds / peak_flops

    def as_dict(self, peak_flops: float | None = None) -> dict:
        d = asdict(self)
        d.update(items_per_second=self.items_per_second, tokens_per_second=self.tokens_per_second)
        if peak_flops:
            d.update(mfu=self.mfu(peak_flops), peak_flops=peak_flops)
        return d


def warm_up(embedder, seqs) -> None:
    """Untimed runs of three sizes, the last one all of `seqs`: kernels, cuBLAS handles and every
    compilation (FlexAttention specialises on the first shape and turns dynamic on the second;
    compiled code recompiles for 64-bit indexing once a batch passes 2^31 elements)."""
    for frac in (20, 10, 1):
        embedder.embed(seqs[: max(1, len(seqs) // frac)])


def run_embed_stage(stage: str, embedder, seqs, monitor=None) -> StageResult:
    """Tokenise outside the clock, then time embedding of all `seqs` (synchronised at the end)."""
    token_lists = embedder.token_lists(seqs)
    lengths = [len(t) for t in token_lists]
    device = embedder.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    if monitor is not None:
        monitor.set_stage(stage)
    t0 = time.perf_counter()
    embedder.embed_tokens(token_lists)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if monitor is not None:
        monitor.set_stage(None)
    result = StageResult(stage, len(seqs), int(sum(lengths)), seconds, forward_flops(embedder.model, lengths, embedder.info["layers"], embedder.dim))
    if device.type == "cuda":
        result.peak_memory_bytes = float(torch.cuda.max_memory_allocated(device))
    if monitor is not None:
        result.gpu_util_percent = monitor.get_average_utilization(stage=stage)
    return result


def _stage_worker(stage: str, source: str, precision: str, seqs: list, out_dir: str, seed: int) -> None:
    """One rank of a multi-GPU stage measurement: embed this rank's shard, timed between barriers."""
    import json
    import os

    from virnucpro import embed, parallel

    r = parallel.rank_from_env() or parallel.Rank()
    use_cuda = torch.cuda.is_available()
    parallel.init_group(r, use_cuda)
    try:
        load = embed.load_dna_model if stage == "dnabert" else embed.load_protein_model
        embedder = load(source, "cuda" if use_cuda else "cpu", precision, seed=seed)
        mine = [seqs[i] for i in parallel.shard([len(s) for s in seqs], r.world)[r.rank]]
        warm_up(embedder, mine)
        monitor = start_monitor() if use_cuda else None
        parallel.barrier(r)
        result = run_embed_stage(stage, embedder, mine, monitor)
        parallel.barrier(r)
        if monitor is not None:
            monitor.stop()
        with open(os.path.join(out_dir, f"rank{r.rank}.json"), "w") as f:
            json.dump(result.as_dict(), f)
    finally:
        parallel.close_group()


def run_embed_stage_multi(stage: str, source: str, precision: str, seqs: list, gpus: list[int] | None,
                          world: int, seed: int = 0) -> StageResult:
    """The stage over `world` processes (one per GPU): items over the slowest rank's time."""
    import json
    import tempfile
    from pathlib import Path

    from virnucpro import parallel

    with tempfile.TemporaryDirectory() as tmp:
        parallel.spawn(_stage_worker, (stage, source, precision, list(seqs), tmp, seed), world, gpus)
        parts = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("rank*.json"))]
    if len(parts) != world:
        raise RuntimeError(f"{len(parts)} of {world} ranks reported")
    result = StageResult(stage, sum(p["items"] for p in parts), sum(p["tokens"] for p in parts),
                         max(p["seconds"] for p in parts), sum(p["flops"] for p in parts))
    result.peak_memory_bytes = max(p["peak_memory_bytes"] for p in parts)
    result.gpu_util_percent = float(np.mean([p["gpu_util_percent"] for p in parts]))
    return result


def start_monitor(interval: float = 0.2):
    """A started NvitopMonitor for the GPU this process computes on, or None where NVML is not available."""
    from virnucpro.utils.gpu_monitor import GPUMonitorUnavailable, NvitopMonitor

    if not torch.cuda.is_available():
        return None
    monitor = NvitopMonitor(devices=[torch.cuda.current_device()], interval=interval)
    try:
        monitor.start()
    except GPUMonitorUnavailable:
        return None
    except Exception as e:  # a broken NVML must not cost the measurement itself
        print(f"warning: GPU monitor failed to start: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    return monitor
