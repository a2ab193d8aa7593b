"""How the suite takes its samples: enough of them, and long enough, that two runs of one
commit agree and a comparison carries a significance test.

asv keeps samples only for what it times itself; a track_* benchmark that returns
{"samples": [...], "number": 1} gets them too: asv stores their median as the result, with
quartiles and a 99 % confidence interval, and `--record-samples` keeps the samples for
`asv compare` and scripts/compare_commits.py.

This module lives in the suite, not in the package: asv runs today's benchmarks against older
commits, so what it needs of the commit under test is only what every recent commit has (an
Embedder's token_lists/embed_tokens, perf.forward_flops, the NVML monitor).
"""
from __future__ import annotations

import gc
import math
import sys
import time
from collections import Counter
from contextlib import contextmanager

# What the numbers mean: changing any of these changes what the stage benchmarks measure, so it is
# part of their definition (benchmarks/versions.json) and needs a new asv version.
METHOD = {
    "samples": 5,               # at least this many per metric and commit
    "cpu_threads": 1,           # CPU stages: one thread, whatever the host has
    "cpu_sample_seconds": 0.25,  # a CPU sample repeats its stage until it has lasted this long
    "nvml_interval_s": 0.1,
    "nvml_samples": 100,        # a GPU stage runs until NVML was read this often while it ran
    "kernel_busy": "torch.profiler CUDA kernels, union of intervals over one extra pass's wall time",
}


def asv_samples(values: list) -> dict:
    """A track_* return value that asv stores with its statistics (see the module docstring)."""
    return {"samples": [float(v) for v in values], "number": 1}


@contextmanager
def quiet_cpu(threads: int):
    """One fixed thread count and no garbage collection while a CPU stage is timed: the GPU hosts
    have 16-128 cores, and a collection in the middle of a 0.25 s sample moved it by percents."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        torch.set_num_threads(before)


def cpu_rates(fn, items: float) -> list[float]:
    """`items` per second of `fn`, one value per sample; each sample runs `fn` until it has lasted
    METHOD["cpu_sample_seconds"], so that a stage of milliseconds is not timed on one call."""
    fn()  # first-touch allocations and imports stay out of the samples
    rates = []
    with quiet_cpu(METHOD["cpu_threads"]):
        for _ in range(METHOD["samples"]):
            calls, t0 = 0, time.perf_counter()
            while True:
                fn()
                calls += 1
                elapsed = time.perf_counter() - t0
                if elapsed >= METHOD["cpu_sample_seconds"]:
                    break
            rates.append(items * calls / elapsed)
    return rates


def busy_fraction(intervals, wall: float) -> float:
    """Share of `wall` covered by at least one of the (start, end) intervals (same unit)."""
    covered, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        covered += end - max(start, reach)
        reach = end
    return covered / wall if wall > 0 else math.nan


def _activity(event) -> str:
    """Kineto's activity type ("kernel", "gpu_memcpy", "gpu_user_annotation", ...); torch 2.11's
    events do not say it (the lent H100, 2026-12-07), so there it is told from the name: Kineto
    names copies "Memcpy ..." and fills "Memset ...", and marks annotations as such."""
    if hasattr(event, "activity_type"):
        return event.activity_type()
    if getattr(event, "is_user_annotation", lambda: False)():
        return "gpu_user_annotation"
    name = event.name().lower()
    return "gpu_memcpy" if name.startswith("memcpy") else "gpu_memset" if name.startswith("memset") else "kernel"


def is_kernel(event) -> bool:
    """A CUDA kernel: copies, fills and annotation ranges on the GPU's timeline are not (NVML does
    not count copies and fills, and an annotation spans kernels and gaps alike)."""
    import torch

    return event.device_type() == torch.autograd.DeviceType.CUDA and _activity(event) == "kernel"


def kernel_busy_percent(run) -> tuple[float, str]:
    """The profiler's exact answer to what NVML estimates: the share of one pass's wall time in
    which a CUDA kernel ran (copies and memsets not counted, as NVML does not count them).
    CPU activity is recorded too: with CUDA's alone the profiler returned no kernel at all on the
    lent H100 (torch 2.11, 2026-12-05), as others report; the host's recording can only widen
    the gaps between launches, so the figure is a lower bound.  Returns (percent, "") or (NaN, why):
    the reason reaches asv's log through the skipped benchmark (setup_cache's stderr does not)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            run()
            torch.cuda.synchronize()
            wall_ns = (time.perf_counter() - t0) * 1e9
        events = prof.profiler.kineto_results.events()
        kernels = [(e.start_ns(), e.start_ns() + e.duration_ns()) for e in events if is_kernel(e)]
    except Exception as exc:  # noqa: BLE001 - a profiler that cannot start must not cost the stage's samples
        why = f"the profiler failed: {type(exc).__name__}: {exc}"
        print(f"warning: kernel-busy {why}", file=sys.stderr)
        return math.nan, why
    if not kernels:
        seen = Counter((str(e.device_type()), _activity(e)) for e in events)
        why = f"the profile recorded no CUDA kernel; events by (device, activity): {dict(seen)}"
        print(f"warning: kernel-busy {why}", file=sys.stderr)
        return math.nan, why
    return 100.0 * busy_fraction(kernels, wall_ns), ""


def gpu_stage(stage: str, embedder, seqs, monitor=None) -> dict:
    """Samples of one embedding stage: each sample embeds all of `seqs` (tokenised once, outside
    the clock); sampling goes on until there are METHOD["samples"] and, under a monitor, NVML was
    read METHOD["nvml_samples"] times during them.  Returns lists of per-sample values and the
    figures of the whole window."""
    import torch

    from virnucpro import perf

    token_lists = embedder.token_lists(seqs)
    lengths = [len(t) for t in token_lists]
    flops = perf.forward_flops(embedder.model, lengths, embedder.info["layers"], embedder.dim)
    cuda = embedder.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(embedder.device)
        torch.cuda.reset_peak_memory_stats(embedder.device)
    seconds, util, nvml = [], [], 0
    while len(seconds) < METHOD["samples"] or (monitor is not None and nvml < METHOD["nvml_samples"]):
        tag = f"{stage}:{len(seconds)}"
        if monitor is not None:
            monitor.set_stage(tag)
        t0 = time.perf_counter()
        embedder.embed_tokens(token_lists)
        if cuda:
            torch.cuda.synchronize(embedder.device)
        seconds.append(time.perf_counter() - t0)
        if monitor is not None:
            monitor.set_stage(None)
            taken = monitor.summary()["stages"].get(tag, {})
            nvml += taken.get("samples", 0)
            util.append(taken.get("mean_util_percent", math.nan))
    out = {"items_per_second": [len(seqs) / s for s in seconds],
           "tokens_per_second": [sum(lengths) / s for s in seconds],
           "flops_per_second": [flops / s for s in seconds], "seconds": seconds}
    if cuda:
        out["peak_memory_bytes"] = float(torch.cuda.max_memory_allocated(embedder.device))
        out["kernel_busy_percent"], why = kernel_busy_percent(lambda: embedder.embed_tokens(token_lists))
        if why:
            out["not_measured"] = {"kernel_busy_percent": why}
    if monitor is not None:
        out.update(gpu_util_percent=util, nvml_samples=nvml)
    return out


def monitored_stage(stage: str, embedder, seqs) -> dict:
    """gpu_stage under an NVML monitor where the embedder is on a GPU (after the caller's warm-up):
    the one way the suite and scripts/gpu_report.py sample a stage."""
    from virnucpro import perf

    cuda = embedder.device.type == "cuda"
    monitor = perf.start_monitor(METHOD["nvml_interval_s"]) if cuda else None
    try:
        return gpu_stage(stage, embedder, seqs, monitor)
    finally:
        if monitor is not None:
            monitor.stop()
