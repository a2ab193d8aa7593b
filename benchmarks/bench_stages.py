"""Each stage in isolation, through Python imports, on fixed prepared inputs.

One `setup_cache` measures every stage once per GPU count this host has; the track_*
methods read their figure from it, so a stage runs once per commit, not once per metric.
Units: translate counts chunks, the other stages count ORFs.
"""
import math
import time
from types import SimpleNamespace

import numpy as np

from . import common

_SOURCE = "random:{preset}"


def _prepared():
    from virnucpro.chunking import chunk_records
    from virnucpro.fasta import read_fasta
    from virnucpro.translate import identify_orfs

    w = common.workload()
    records = [r for f in w["files"] for r in read_fasta(f)[0]]
    chunks = chunk_records(records, w["chunk_len"])
    return records, chunks, identify_orfs(chunks)


def _best_of(fn, min_repeat: int = 5, min_seconds: float = 1.0) -> float:
    """Best time of at least `min_repeat` runs lasting `min_seconds` together.  The CPU stages
    take milliseconds; best of 3 moved by 15-60% between commits on the GPU host."""
    times, start = [], time.perf_counter()
    while len(times) < min_repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _cpu_stages(records, chunks, orfs, p):
    """translate, merge and predict run in one process whatever the GPU count."""
    import torch

    from virnucpro.chunking import chunk_records
    from virnucpro.embed import random_classifier
    from virnucpro.outputs import chunk_verdicts
    from virnucpro.pipeline import Prediction
    from virnucpro.presets import PRESETS

    shape = PRESETS[p["preset"]]
    dims = shape["dnabert"]["hidden_size"], shape["esm2"]["embed_dim"]
    from virnucpro.translate import identify_orfs

    bp = sum(len(r.seq) for r in records)
    t = _best_of(lambda: identify_orfs(chunk_records(records, p["chunk_len"])))
    out = {("translate", 1): {"items_per_second": len(chunks) / t, "mbp_per_second": bp / t / 1e6}}

    rng = np.random.default_rng(0)
    dna = torch.from_numpy(rng.standard_normal((len(orfs), dims[0]), dtype=np.float32))
    prot = torch.from_numpy(rng.standard_normal((len(orfs), dims[1]), dtype=np.float32))
    t = _best_of(lambda: torch.cat([dna, prot], dim=1))
    out[("merge", 1)] = {"items_per_second": len(orfs) / t}

    clf = random_classifier(sum(dims), shape["classifier"]["hidden_dim"])
    features = torch.cat([dna, prot], dim=1)

    data = SimpleNamespace(orfs=orfs)  # all that chunk_verdicts reads

    def predict():
        with torch.inference_mode():
            probs = torch.softmax(clf(features), dim=1).numpy()
        chunk_verdicts(data, Prediction(probs, probs, features))
    t = _best_of(predict)
    out[("predict", 1)] = {"items_per_second": len(orfs) / t}
    return out


def setup_cache():
    try:
        common.require_devices(1)
    except NotImplementedError:
        return {}
    with common.safe_import():
        from virnucpro import embed, perf

    p = common.profile()
    records, chunks, orfs = _prepared()
    results = _cpu_stages(records, chunks, orfs, p)
    cuda = p["device"] == "cuda"
    precision = "bf16" if cuda else "fp32"
    source = _SOURCE.format(preset=p["preset"])
    peak = perf.measure_peak_flops("cuda") if cuda else None
    # DNABERT-S over the workload's ORFs once lasts a fraction of a second on a GPU: too short
    # for NVML's utilisation counter, so on the GPU it embeds them several times over.
    seqs = {"dnabert": [o.nucleotide for o in orfs] * (8 if cuda else 1), "esm2": [o.protein for o in orfs]}
    for n in common.N_GPUS:
        if n > max(1, common.gpu_count()):
            continue
        for stage in common.GPU_STAGES:
            if n == 1:
                load = embed.load_dna_model if stage == "dnabert" else embed.load_protein_model
                embedder = load(source, p["device"], precision)
                perf.warm_up(embedder, seqs[stage])
                monitor = perf.start_monitor() if cuda else None
                r = perf.run_embed_stage(stage, embedder, seqs[stage], monitor)
                if monitor is not None:
                    monitor.stop()
                del embedder
                if cuda:
                    import torch
                    torch.cuda.empty_cache()
            else:
                r = perf.run_embed_stage_multi(stage, source, precision, seqs[stage], list(range(n)), n)
            results[(stage, n)] = r.as_dict(peak)
    return results


setup_cache.timeout = common.timeout()


def _get(cache, stage, n, key):
    value = cache.get((stage, n), {}).get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise NotImplementedError(f"{key} of {stage} on {n} GPU(s) not measured on this host")
    return value


class TrackThroughput:
    params = [common.STAGES, common.N_GPUS]
    param_names = ["stage", "n_gpus"]
    unit = "sequences/s"
    timeout = common.timeout()

    def setup(self, cache, stage, n_gpus):
        common.require_devices(n_gpus)
        _get(cache, stage, n_gpus, "items_per_second")

    def track_throughput(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, "items_per_second")


class TrackTranslate:
    unit = "Mbp/s"
    timeout = common.timeout()

    def setup(self, cache):
        _get(cache, "translate", 1, "mbp_per_second")

    def track_translate_mbp_per_second(self, cache):
        return _get(cache, "translate", 1, "mbp_per_second")


class _GpuStageMetric:
    params = [common.GPU_STAGES, common.N_GPUS]
    param_names = ["stage", "n_gpus"]
    timeout = common.timeout()
    key = ""
    gpu_only = True

    def setup(self, cache, stage, n_gpus):
        common.require_devices(n_gpus, gpu_only=self.gpu_only)
        _get(cache, stage, n_gpus, self.key)


class TrackTokensPerSecond(_GpuStageMetric):
    unit = "tokens/s"
    key = "tokens_per_second"
    gpu_only = False

    def track_tokens_per_second(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)


class TrackMFU(_GpuStageMetric):
    """Model FLOPs utilisation: achieved FLOP/s over the bf16 matmul rate measured in the same run."""
    unit = "fraction"
    key = "mfu"

    def track_mfu(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)


class TrackGPUUtilization(_GpuStageMetric):
    """NVML utilisation sampled by nvitop while the stage runs (after warm-up), averaged over the GPUs used."""
    unit = "%"
    key = "gpu_util_percent"

    def track_gpu_utilization(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)


class TrackPeakGPUMemory(_GpuStageMetric):
    unit = "bytes"
    key = "peak_memory_bytes"

    def track_peak_gpu_memory(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)
