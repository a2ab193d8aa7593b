"""Each stage in isolation, through Python imports, on fixed prepared inputs.

One `setup_cache` measures every stage per GPU count this host has, several samples each
(benchmarks/sampling.py); the track_* methods read their figure from it, so a stage runs once
per commit, not once per metric.  Units: translate counts chunks, the other stages count ORFs.
"""
import math
from types import SimpleNamespace

import numpy as np

from . import common, sampling

_SOURCE = "random:{preset}"
# Part of what the stage benchmarks measure (benchmarks/versions.json): the inputs and the method.
MEASURES = {
    "inputs": {p: {k: common.PROFILES[p][k] for k in ("genome_bp", "parts", "chunk_len", "preset")}
               for p in ("tiny", "full")},
    # DNABERT-S embeds the genome's ORFs 8 times over per sample on a GPU (once on the CPU), ESM-2
    # every 4th ORF: both about 1-2 s a sample on one H100, so that 100 NVML reads take 5-10 samples.
    "gpu_inputs": {"dnabert": "orfs x 8 (cuda) / x 1 (cpu)", "esm2": "orfs[::4] (cuda) / all (cpu)"},
    "peak": "bf16 matmul 8192^3 x 10, measured in the same run",
    "method": sampling.METHOD,
}


def _prepared():
    from virnucpro.chunking import chunk_records
    from virnucpro.fasta import read_fasta
    from virnucpro.translate import identify_orfs

    w = common.workload()
    records = [r for f in w["files"] for r in read_fasta(f)[0]]
    chunks = chunk_records(records, w["chunk_len"])
    return records, chunks, identify_orfs(chunks)


def _cpu_stages(records, chunks, orfs, p):
    """translate, merge and predict run in one process whatever the GPU count."""
    import torch

    from virnucpro.chunking import chunk_records
    from virnucpro.embed import random_classifier
    from virnucpro.outputs import chunk_verdicts
    from virnucpro.pipeline import Prediction
    from virnucpro.presets import PRESETS
    from virnucpro.translate import identify_orfs

    shape = PRESETS[p["preset"]]
    dims = shape["dnabert"]["hidden_size"], shape["esm2"]["embed_dim"]
    bp = sum(len(r.seq) for r in records)
    rates = sampling.cpu_rates(lambda: identify_orfs(chunk_records(records, p["chunk_len"])), len(chunks))
    out = {("translate", 1): {"items_per_second": rates, "mbp_per_second": [r * bp / len(chunks) / 1e6 for r in rates]}}

    rng = np.random.default_rng(0)
    dna = torch.from_numpy(rng.standard_normal((len(orfs), dims[0]), dtype=np.float32))
    prot = torch.from_numpy(rng.standard_normal((len(orfs), dims[1]), dtype=np.float32))
    out[("merge", 1)] = {"items_per_second": sampling.cpu_rates(lambda: torch.cat([dna, prot], dim=1), len(orfs))}

    clf = random_classifier(sum(dims), shape["classifier"]["hidden_dim"])
    features = torch.cat([dna, prot], dim=1)
    data = SimpleNamespace(orfs=orfs)  # all that chunk_verdicts reads

    def predict():
        with torch.inference_mode():
            probs = torch.softmax(clf(features), dim=1).numpy()
        chunk_verdicts(data, Prediction(probs, probs, features))
    out[("predict", 1)] = {"items_per_second": sampling.cpu_rates(predict, len(orfs))}
    return out


def _one_gpu(stage, source, p, seqs, peak):
    from virnucpro import embed, perf

    cuda = p["device"] == "cuda"
    load = embed.load_dna_model if stage == "dnabert" else embed.load_protein_model
    embedder = load(source, p["device"], "bf16" if cuda else "fp32")
    perf.warm_up(embedder, seqs)
    r = sampling.monitored_stage(stage, embedder, seqs)
    if peak:
        r["mfu"] = [f / peak for f in r["flops_per_second"]]
    del embedder
    if cuda:
        import torch
        torch.cuda.empty_cache()
    return r


def setup_cache():
    try:
        common.require_devices(1)
    except NotImplementedError:
        return {}
    with common.safe_import():
        from virnucpro import embed, perf  # noqa: F401 (the commit must have the stage API)

    p = common.profile()
    records, chunks, orfs = _prepared()
    results = _cpu_stages(records, chunks, orfs, p)
    cuda = p["device"] == "cuda"
    source = _SOURCE.format(preset=p["preset"])
    peak = perf.measure_peak_flops("cuda") if cuda else None
    seqs = {"dnabert": [o.nucleotide for o in orfs] * (8 if cuda else 1),
            "esm2": [o.protein for o in orfs][:: 4 if cuda else 1]}
    for n in common.N_GPUS:
        if n > max(1, common.gpu_count()):
            continue
        for stage in common.GPU_STAGES:
            if n == 1:
                results[(stage, n)] = _one_gpu(stage, source, p, seqs[stage], peak)
            else:  # one sample: each spawns n processes and loads the model again
                r = perf.run_embed_stage_multi(stage, source, "bf16", seqs[stage], list(range(n)), n)
                results[(stage, n)] = {k: [v] for k, v in r.as_dict(peak).items() if isinstance(v, float)}
    return results


setup_cache.timeout = common.timeout()


def _get(cache, stage, n, key):
    value = cache.get((stage, n), {}).get(key)
    values = value if isinstance(value, list) else [value]
    if not values or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        why = cache.get((stage, n), {}).get("not_measured", {}).get(key)
        raise NotImplementedError(f"{key} of {stage} on {n} GPU(s) not measured on this host"
                                  + (f": {why}" if why else ""))
    return sampling.asv_samples(value) if isinstance(value, list) else value


class _Stage:
    """A metric of one or more stages at each GPU count; `version` is the series on the site:
    it changes only with MEASURES, the metric's unit or its parameters (benchmarks/versions.json)."""
    params = [common.GPU_STAGES, common.N_GPUS]
    param_names = ["stage", "n_gpus"]
    timeout = common.timeout()
    key = ""
    gpu_only = True

    def setup(self, cache, stage, n_gpus):
        common.require_devices(n_gpus, gpu_only=self.gpu_only)
        _get(cache, stage, n_gpus, self.key)


class TrackThroughput(_Stage):
    version = "2"
    params = [common.STAGES, common.N_GPUS]
    unit = "sequences/s"
    key = "items_per_second"
    gpu_only = False

    def track_throughput(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)


class TrackTranslate:
    version = "2"
    unit = "Mbp/s"
    timeout = common.timeout()

    def setup(self, cache):
        _get(cache, "translate", 1, "mbp_per_second")

    def track_translate_mbp_per_second(self, cache):
        return _get(cache, "translate", 1, "mbp_per_second")


class TrackTokensPerSecond(_Stage):
    version = "2"
    unit = "tokens/s"
    key = "tokens_per_second"
    gpu_only = False

    def track_tokens_per_second(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)


class TrackMFU(_Stage):
    """Model FLOPs utilisation: achieved FLOP/s over the bf16 matmul rate measured in the same run."""
    version = "2"
    unit = "fraction"
    key = "mfu"

    def track_mfu(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)


class TrackGPUUtilization(_Stage):
    """NVML utilisation (nvitop, every 0.1 s) while the stage runs, one sample per pass over its
    inputs; the stage runs until NVML was read at least 100 times (track_nvml_samples)."""
    version = "2"
    unit = "%"
    key = "gpu_util_percent"

    def track_gpu_utilization(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)


class TrackNVMLSamples(_Stage):
    """How many NVML readings track_gpu_utilization averages: its trust, shown beside it."""
    version = "1"
    unit = "samples"
    key = "nvml_samples"

    def track_nvml_samples(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)


class TrackKernelBusy(_Stage):
    """The profiler's share of one pass's wall time in which a CUDA kernel ran: what NVML's
    utilisation estimates by sampling, measured exactly."""
    version = "1"
    unit = "%"
    key = "kernel_busy_percent"

    def track_kernel_busy(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)


class TrackPeakGPUMemory(_Stage):
    version = "2"
    unit = "bytes"
    key = "peak_memory_bytes"

    def track_peak_gpu_memory(self, cache, stage, n_gpus):
        return _get(cache, stage, n_gpus, self.key)
