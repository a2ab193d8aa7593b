"""Shared helpers of the asv suite: the data profile, the workload files and host checks.

Params are identical on every host; what a host cannot run is skipped by raising
NotImplementedError in setup, which asv records as NaN ("not measured").
"""
import ctypes
import importlib.util
import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from . import datasets

N_GPUS = [1, 2, 4, 8]
STAGES = ["translate", "dnabert", "esm2", "merge", "predict"]
GPU_STAGES = ["dnabert", "esm2"]
GENOME = "GCF_001457455.1_NCTC11397_genomic.fna.gz"  # C. diphtheriae NCTC 11397, 2.46 Mbp, shipped by pyrodigal

# tiny: CPU, tiny preset, a slice of the genome.  full: GPU, the published model sizes, the whole chromosome.
PROFILES = {
    "tiny": dict(genome_bp=24_000, parts=3, reads=60, reference_bp=6_000, preset="tiny", device="cpu",
                 chunk_len=500, timeout=600, metagenome_bp=(8_000, 8_000), predict_reads=40),
    # time_predict's workload: >= 90 s at one H200 (9 x 10 Mbp + 20k reads), so that the fixed cost of a
    # run (time_startup, ~3 s) cannot hide scaling: the Amdahl bound at 8 GPUs stays above 6.5x
    "full": dict(genome_bp=None, parts=3, reads=2_000, reference_bp=400_000, preset="full", device="cuda",
                 chunk_len=500, timeout=1800, metagenome_bp=(10_000_000,) * 9, predict_reads=20_000),
}
READ_LEN = 150
FEW_READS = 10  # a run that is almost all fixed cost (the first 10 reads hold ORFs in both profiles)


@lru_cache(maxsize=1)
def gpu_count() -> int:
    """GPUs this process may use.  Asked of NVML (through nvitop) where it can be: asv starts a
    fresh process for every parameter combination, and importing torch and starting CUDA in
    each one costs seconds, tens of times per commit."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return 0  # no NVIDIA driver (and nvitop would print a page about it)
    try:
        from nvitop import Device, libnvml
    except ImportError:
        Device = None
    if Device is not None:
        try:
            return len(Device.parse_cuda_visible_devices()) if Device.count() else 0
        except libnvml.NVMLError:
            return 0  # no driver: no GPU
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:
        return 0


def profile_name() -> str:
    name = os.environ.get("VIRNUCPRO_BENCH_PROFILE") or ("full" if gpu_count() else "tiny")
    if name not in PROFILES:
        raise ValueError(f"VIRNUCPRO_BENCH_PROFILE={name}: expected one of {sorted(PROFILES)}")
    return name


def profile() -> dict:
    return PROFILES[profile_name()]


def timeout() -> float:
    """The per-benchmark time limit, for class attributes read when asv imports the suite: the
    profile named in VIRNUCPRO_BENCH_PROFILE, else the longest of all profiles.  Reads the
    environment only, so importing a benchmark module probes no GPU and starts nothing."""
    name = os.environ.get("VIRNUCPRO_BENCH_PROFILE")
    if name in PROFILES:
        return PROFILES[name]["timeout"]
    return max(p["timeout"] for p in PROFILES.values())


class safe_import:
    """`with safe_import(): from virnucpro.x import y` in a benchmark's setup: asv runs today's
    benchmarks against older commits, where a module or name may not exist yet; the ImportError
    becomes NotImplementedError, which asv records as skipped (NaN) instead of failed.  At module
    level use `with safe_import(skip=False) as imp:` and call `imp.require()` in setup, so that
    discovery never breaks."""

    def __init__(self, skip: bool = True):
        self.skip = skip
        self.error: ImportError | None = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None or not issubclass(kind, ImportError):
            return False
        self.error = value
        if self.skip:
            raise NotImplementedError(f"not in this commit: {value}") from value
        return True

    def require(self) -> None:
        if self.error is not None:
            raise NotImplementedError(f"not in this commit: {self.error}") from self.error


def require_devices(n_gpus: int, gpu_only: bool = False) -> None:
    """Skip (NaN) what this host cannot run.  On a host without a GPU, n_gpus=1 means one CPU process."""
    have = gpu_count()
    if profile()["device"] == "cuda" and have == 0:
        raise NotImplementedError("the full profile needs a GPU")
    if gpu_only and have == 0:
        raise NotImplementedError("GPU metric on a host without a GPU")
    if n_gpus > max(1, have):
        raise NotImplementedError(f"{n_gpus} GPUs asked for, {have} present")


def data_root() -> Path:
    """Where the suite keeps what it makes once per machine: outside the repository."""
    return Path(os.environ.get("VIRNUCPRO_BENCH_DATA", Path.home() / ".cache" / "virnucpro-bench"))


def model_files(name: str | None = None) -> dict:
    """The profile's model files in the published formats (a fair-esm ESM-2 .pt, a DNABERT-S
    snapshot folder, a classifier), random and seeded, written once per machine (5.6 GB at full
    size).  They are written by this checkout's writer, loaded from its file, so that every commit
    under test, older ones included, reads the same files as a user's run does."""
    preset = PROFILES[name or profile_name()]["preset"]
    index = data_root() / "models" / f"{preset}.json"
    if index.is_file():
        files = json.loads(index.read_text())
        if all(Path(f).exists() for f in files.values()):
            return files
    source = Path(__file__).resolve().parents[1] / "virnucpro" / "models" / "weightfiles.py"
    spec = importlib.util.spec_from_file_location("_bench_weightfiles", source)
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    files = {k: str(v) for k, v in writer.model_files(data_root() / "models", preset).items()}
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps(files, indent=1))
    os.replace(tmp, index)
    return files


def workload(name: str | None = None) -> dict:
    """The profile's input files, made once from the genome and cached.  Deterministic."""
    name = name or profile_name()
    p = PROFILES[name]
    root = data_root() / name
    files = [root / f"genome_part{i + 1}.fna" for i in range(p["parts"])] + [root / "reads.fna"]
    reference = root / f"reference_{p['reference_bp']}bp.fna"
    few_reads = root / f"first_{FEW_READS}_reads.fna"
    if not all(f.exists() for f in files + [reference, few_reads]):
        root.mkdir(parents=True, exist_ok=True)
        genome = datasets.sequence(GENOME)[: p["genome_bp"]]
        step = -(-len(genome) // p["parts"])
        for i in range(p["parts"]):
            datasets.write_fasta(files[i], [(f"part{i + 1}", genome[i * step:(i + 1) * step])])
        reads = datasets.genome_reads(genome, p["reads"], READ_LEN, seed=150)
        datasets.write_fasta(files[-1], reads)
        datasets.write_fasta(few_reads, reads[:FEW_READS])
        datasets.write_fasta(reference, [("reference_subset", genome[: p["reference_bp"]])])
    predict_files = [root / f"metagenome{i + 1}.fna" for i in range(len(p["metagenome_bp"]))]
    predict_files.append(root / f"reads_{p['predict_reads']}.fna")
    if not all(f.exists() for f in predict_files):
        for i, bp in enumerate(p["metagenome_bp"]):
            datasets.write_fasta(predict_files[i], datasets.metagenome(bp, seed=i + 1))
        datasets.write_fasta(predict_files[-1], datasets.reads(p["predict_reads"], seed=100))
    return {"files": [str(f) for f in files], "reads_file": str(files[-1]), "reference": str(reference),
            "few_reads": str(few_reads), "predict_files": [str(f) for f in predict_files], "root": root, **p}


def predict_command(inputs, out: str, n_gpus: int, extra=()) -> list:
    """`predict` as a user runs it, its weights read from the files of `model_files` (written in setup_cache)."""
    p, m = profile(), model_files()
    cmd = [sys.executable, "-m", "virnucpro", "predict", *inputs, "-l", str(p["chunk_len"]), "-o", out,
           "--esm", m["esm"], "--dnabert", m["dnabert"], "--classifier", m["classifier"], "--no-progress", "--force"]
    if p["device"] == "cuda":
        cmd += ["--gpus", str(n_gpus)]
    else:
        cmd += ["--device", "cpu"]
    return cmd + list(extra)


def run(cmd, timeout: float, env: dict | None = None) -> None:
    # asv hands the commit under test to this process through sys.path only (ASV_PYTHONPATH),
    # so the child gets the same path or it would import another virnucpro, or none.
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({done.returncode}): {done.stderr[-2000:]}")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_throughput(out: str) -> float:
    """ORFs/s of a finished `predict` from its run.json files: all ORFs over the span from the
    first input read to the last result written, less the first model load (a fixed cost, which
    time_startup shows)."""
    import json

    runs = [json.loads(p.read_text()) for p in Path(out).glob("*/run.json")]
    first = min(runs, key=lambda r: r["seconds_since_first_input"])
    load = sum(v for k, v in first["seconds"].items() if k.startswith("load_"))
    span = max(r["seconds_since_first_input"] for r in runs) - load
    return sum(r["counts"]["orfs"] for r in runs) / span


def pipeline_options(engine: str = "fast", name: str | None = None):
    """The profile's `predict` options; "reference" as `--engine reference` sets them.  (The
    recipe is repeated here, not imported: the suite also runs older commits.)"""
    from virnucpro import pipeline

    p = PROFILES[name or profile_name()]
    opts = pipeline.Options(chunk_len=p["chunk_len"], random_weights=True, preset=p["preset"],
                            device=p["device"], progress=False)
    if engine == "reference":
        opts.precision, opts.dna_batch_tokens, opts.esm_batch_tokens = "fp32", 1, 2048
        opts.row_blocks = False  # (an attribute older commits do not read)
    return opts


def predict_in_process(paths, models, opts, out, monitor=None, min_seconds: float = 0.0) -> dict:
    """`predict` from reading FASTA to written results, with models already loaded, through the
    pipeline's own Engine (the path the CLI takes, checkpoints included): what a run costs once
    started, without interpreter start-up and model loading.  Files are taken in order until
    the run has lasted `min_seconds` (at least one)."""
    import time

    from virnucpro import pipeline

    if not hasattr(pipeline, "Engine"):  # a commit from before the Engine: its own loop
        return _predict_loop(paths, models, opts, out, monitor, min_seconds)
    engine = pipeline.Engine(opts, models=models)
    t0 = time.perf_counter()
    paths = iter(paths)
    path = next(paths)
    while path is not None:
        if monitor is not None:
            monitor.set_stage("embedding")
        engine.predict([path], Path(out))
        if monitor is not None:
            monitor.set_stage(None)
        path = next(paths, None) if time.perf_counter() - t0 < min_seconds else None
    stage_seconds: dict = {}
    for h in engine.history:
        for k, v in h["stage_seconds"].items():
            stage_seconds[k] = stage_seconds.get(k, 0.0) + v
    return {"files": len(engine.history), "orfs": sum(h["orfs"] for h in engine.history),
            "esm_tokens": sum(h["esm_tokens"] for h in engine.history), "seconds": time.perf_counter() - t0,
            "stage_seconds": stage_seconds}


def _predict_loop(paths, models, opts, out, monitor=None, min_seconds: float = 0.0) -> dict:
    """predict_in_process for commits without pipeline.Engine, as the suite measured them."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from virnucpro import pipeline
    from virnucpro.outputs import write_result_dir

    def load(path):
        data, clock = pipeline.read_inputs([path])[0], pipeline.StageClock()
        return pipeline.prepare(data, opts.chunk_len, clock), clock

    t0 = time.perf_counter()
    files = orfs = tokens = 0
    stage_seconds: dict = {}
    paths = iter(paths)
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(load, next(paths))
        while ahead is not None:
            data, clock = ahead.result()
            files += 1
            path = next(paths, None) if time.perf_counter() - t0 < min_seconds else None
            ahead = pool.submit(load, path) if path is not None else None
            if monitor is not None:
                monitor.set_stage("embedding")
            pred = pipeline.classify(data, models, False, clock)
            if monitor is not None:
                monitor.set_stage(None)
            write_result_dir(Path(out), data, pred, {}, True)
            orfs += len(data.orfs)
            tokens += sum(len(o.protein) + 2 for o in data.orfs)
            for k, v in clock.seconds.items():
                stage_seconds[k] = stage_seconds.get(k, 0.0) + v
    return {"files": files, "orfs": orfs, "esm_tokens": tokens, "seconds": time.perf_counter() - t0,
            "stage_seconds": stage_seconds}
