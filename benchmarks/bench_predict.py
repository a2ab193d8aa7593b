"""End to end: `virnucpro predict` as a user runs it, in a subprocess."""
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from . import common

# Part of what these benchmarks measure (benchmarks/versions.json): the workload of each profile.
# (track_speedup_vs_reference: the genome slice of reference_bp, warmed up on the reads.)
MEASURES = {p: {k: common.PROFILES[p][k] for k in ("metagenome_bp", "predict_reads", "chunk_len", "preset", "reads",
                                                     "genome_bp", "reference_bp")}
            for p in ("tiny", "full")} | {"few_reads": common.FEW_READS, "weights": "files in the published formats"}


def _warm_up(key: str = "reads_file"):
    # Model files, page cache, kernel caches and the dataset itself: not part of what is timed.
    try:
        common.require_devices(1)
    except NotImplementedError:
        return
    common.model_files()
    w = common.workload()
    out = tempfile.mkdtemp(prefix="virnucpro-warmup-")
    try:
        common.run(common.predict_command([w[key]], out, 1), w["timeout"])
    finally:
        shutil.rmtree(out, ignore_errors=True)


class _OneRun:
    """One timed run per benchmark: a run is long and its warm-up is done in setup_cache."""
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0
    timeout = common.timeout()


def _handoff(n_gpus: int, what: str = "throughput") -> Path:
    """Where time_predict leaves its run's throughput for track_predict_throughput, and its 1-GPU
    run's replayed speedups for track_predicted_speedup: one run of ~100 s serves all three.
    Keyed by the asv process (the parent of every benchmark process of one `asv run`) and the
    package under test, so that no other run's file is ever read.  asv runs benchmarks in the
    order of their names (TimePredict < TrackPredictThroughput < TrackPredictedSpeedup), each
    class's setup_cache just before its first benchmark: the consumers come after the producer."""
    import virnucpro

    package = hashlib.sha256(os.path.dirname(virnucpro.__file__).encode()).hexdigest()[:12]
    key = f"{os.getppid()}-{package}-{n_gpus}" + ("" if what == "throughput" else f"-{what}")
    return common.data_root() / "handoff" / f"{key}.json"


def _measured(out: str, wall: float) -> dict | None:
    """The 1-GPU run in `out`, whose measured wall was `wall`, as virnucpro/replay.py replays it;
    None for a commit whose runs record no queue or whose replay predates the measured spawn
    cost (it divided two replays, or left spawning N workers out)."""
    try:
        from virnucpro import replay
    except ImportError:
        return None
    if not hasattr(replay, "measured_spawn"):
        return None
    try:
        inputs, before, ahead = replay.measured(out)
    except ValueError:
        return None
    return {"wall": wall, "before": before, "ahead": ahead,
            "inputs": [{"ranges": i.ranges, "write": i.write} for i in inputs]}


def _spawn(timeout: float, repeat: int = 3):
    """What one spawned worker costs a run (replay.measured_spawn): `repeat` runs of the short
    input in a spawned worker (VIRNUCPRO_SPAWN_ONE=1) and as many in-process, interleaved."""
    from virnucpro import replay

    runs: dict = {"1": [], "0": []}
    tmp = tempfile.mkdtemp(prefix="virnucpro-spawn-")
    try:
        cmd = common.predict_command([common.workload()["few_reads"]], str(Path(tmp) / "out"), 1)
        for i in range(repeat):
            for spawn, walls in runs.items():
                marks = Path(tmp) / f"trace-{spawn}-{i}.txt"
                walls.append((_timed_run(cmd, timeout, {"VIRNUCPRO_SPAWN_ONE": spawn, "VIRNUCPRO_TRACE": str(marks)}),
                              marks))
        return replay.measured_spawn(runs["1"], runs["0"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _predicted(run: dict, spawn, cores: int) -> dict:
    """{n_gpus: speedup} of `_measured`'s run on N ranks (replay.speedup), spawning included."""
    from virnucpro import replay

    inputs = [replay.Input(i["ranges"], i["write"]) for i in run["inputs"]]
    return {str(n): replay.speedup(inputs, n, run["wall"], run["before"], run["ahead"],
                                   replay.spawn_cost(replay.Spawn(*spawn), n, cores))
            for n in common.N_GPUS if n > 1}


def _timed_run(cmd, timeout, env=None) -> float:
    t0 = time.perf_counter()
    common.run(cmd, timeout, env)
    return time.perf_counter() - t0


class TimePredict(_OneRun):
    """Wall time of a whole run over several input files: metagenome-like assemblies (contigs of
    1-60 kb, mutated copies of stretches of four real genomes) and a file of 150 bp reads, the
    weights read from files in the published formats (common.model_files).  persistent_models=False
    reads the model files again for every input file."""
    params = [common.N_GPUS, [True, False]]
    param_names = ["n_gpus", "persistent_models"]
    version = "3"

    def setup_cache(self):
        _warm_up()

    def setup(self, n_gpus, persistent_models):
        common.require_devices(n_gpus)
        self.out = tempfile.mkdtemp(prefix="virnucpro-bench-")
        extra = [] if persistent_models else ["--no-persistent-models"]
        self.cmd = common.predict_command(common.workload()["predict_files"], self.out, n_gpus, extra)

    def teardown(self, n_gpus, persistent_models):
        if not hasattr(self, "out"):  # setup may have skipped before making it
            return
        if persistent_models and list(Path(self.out).glob("*/run.json")):
            path = _handoff(n_gpus)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"orfs_per_second": common.run_throughput(self.out)}))
            if n_gpus == 1 and hasattr(self, "wall"):
                _handoff(1, "replay").write_text(json.dumps(_measured(self.out, self.wall)))
        shutil.rmtree(self.out, ignore_errors=True)

    def time_predict(self, n_gpus, persistent_models):
        self.wall = _timed_run(self.cmd, self.timeout)  # for the replay: the same clock as asv's, in-process


class TrackPredictThroughput(_OneRun):
    """ORFs per second of time_predict's run, from the first input read to the last result written
    (run.json): the engine's scaling with n_gpus, apart from the fixed cost that time_startup shows."""
    params = [common.N_GPUS]
    param_names = ["n_gpus"]
    unit = "ORFs/s"
    version = "3"

    def setup_cache(self):
        if not any(_handoff(n).is_file() for n in common.N_GPUS):
            _warm_up()

    def setup(self, n_gpus):
        common.require_devices(n_gpus)
        self.out = tempfile.mkdtemp(prefix="virnucpro-bench-")
        self.cmd = common.predict_command(common.workload()["predict_files"], self.out, n_gpus)

    def teardown(self, n_gpus):
        if hasattr(self, "out"):
            shutil.rmtree(self.out, ignore_errors=True)

    def track_predict_throughput(self, n_gpus):
        """time_predict's run when it ran in this `asv run` (it comes first), else a run of its own."""
        handed = _handoff(n_gpus)
        if handed.is_file():
            value = json.loads(handed.read_text())["orfs_per_second"]
            handed.unlink()
            return value
        common.run(self.cmd, self.timeout)
        return common.run_throughput(self.out)


class TrackPredictedSpeedup(_OneRun):
    """time_predict's speedup (persistent models) on n_gpus GPUs as virnucpro/replay.py predicts it
    from the 1-GPU run: each range's measured seconds, the start-up before the queue and each
    input's merge and write (run.json), replayed with n_gpus ranks pulling from the engine's
    queue; the rest of the run's measured wall (imports, model load, exit) as it was; and what
    spawning n_gpus workers adds, measured here on the short input as one spawned worker against
    the in-process run (_spawn).  A prediction, not a measurement, and an upper
    bound: NCCL's group of N and N ranks reading the model files at once need N GPUs to be seen.
    scripts/check_thresholds.py prints it beside a speedup not measured.  NaN for a commit whose
    runs record no queue or that cannot spawn one worker on request.
    Version 4: the spawn term from each run's marks (replay.measured_spawn: start-up from the
    command's torch import to the models loaded, the rest after the last result written);
    version 3 took it from the walls (start-up to the process group, the rest of the wall
    difference); version 3 first counted spawning and rank 0's writes at every N (version 2 left
    both out; version 1 divided two replays)."""
    METHOD = ("measured 1-GPU wall / (that wall - replay(1 rank) + replay(n_gpus ranks) + spawn(n_gpus)); "
              "spawn: 3 spawned 1-worker runs of few_reads against 3 in-process (medians, replay.measured_spawn): "
              "start-up from the command's torch import to the models loaded, times n_gpus / cores where the "
              "ranks outnumber the cores, plus the rest from the last result written to the end")
    params = [[n for n in common.N_GPUS if n > 1]]
    param_names = ["n_gpus"]
    unit = "x"
    version = "4"

    def setup_cache(self):
        """time_predict's 1-GPU run when it ran in this `asv run`, else a run of its own."""
        handed = _handoff(1, "replay")
        if handed.is_file():
            run = json.loads(handed.read_text())
            handed.unlink()
        else:
            try:
                common.require_devices(1)
            except NotImplementedError:
                return None
            _warm_up()
            out = tempfile.mkdtemp(prefix="virnucpro-bench-")
            try:
                wall = _timed_run(common.predict_command(common.workload()["predict_files"], out, 1), self.timeout)
                run = _measured(out, wall)
            finally:
                shutil.rmtree(out, ignore_errors=True)
        if run is None:
            return None
        return _predicted(run, _spawn(self.timeout), common.usable_cores())

    def setup(self, replayed, n_gpus):
        if replayed is None:
            raise NotImplementedError("no 1-GPU run with the queue's record to replay")

    def track_predicted_speedup(self, replayed, n_gpus):
        return replayed[str(n_gpus)]


class TimeStartup(_OneRun):
    """Wall time of `predict` on 10 reads: the fixed cost of a run (interpreter, imports, one
    worker per GPU, reading the model files, kernel compilation or cache loads).  It is paid once per run
    whatever the input, so it bounds what more GPUs can gain on small inputs; run.json's
    `startup_seconds` and `seconds.load_*` break it down."""
    params = [common.N_GPUS]
    param_names = ["n_gpus"]
    version = "3"
    repeat = 5  # a few seconds each: five samples per commit give the comparison its statistics

    def setup_cache(self):
        _warm_up("few_reads")

    def setup(self, n_gpus):
        common.require_devices(n_gpus)
        self.out = tempfile.mkdtemp(prefix="virnucpro-bench-")
        self.cmd = common.predict_command([common.workload()["few_reads"]], self.out, n_gpus)

    def teardown(self, n_gpus):
        if hasattr(self, "out"):
            shutil.rmtree(self.out, ignore_errors=True)

    def time_startup(self, n_gpus):
        common.run(self.cmd, self.timeout)


class TrackSpeedupVsReference:
    """Speedup of the default engine over `--engine reference` (the original recipe: fp32,
    DNABERT-S one sequence per forward, ESM-2 in 2048-token batches) on the same host and data:
    `predict` from FASTA to written results, in this process, each engine's models loaded and
    warmed up first on inputs of two sizes: compiled kernels specialise on their first shape and
    recompile for any size on the second, and that compile is a fixed cost, not throughput.
    Interpreter start-up and model loading are left out: they are the same fixed cost for both
    engines and would make the ratio depend on the input's size."""
    unit = "x"
    timeout = common.timeout()
    version = "3"

    def setup(self):
        common.require_devices(1)
        with common.safe_import():
            from virnucpro import pipeline  # noqa: F401 (load_models, below)
        self.out = tempfile.mkdtemp(prefix="virnucpro-bench-")
        w = common.workload()
        self.input, self.warm = w["reference"], [w["few_reads"], w["reads_file"]]

    def teardown(self):
        if hasattr(self, "out"):  # setup may have skipped before making it
            shutil.rmtree(self.out, ignore_errors=True)

    def _seconds(self, engine):
        import torch

        from virnucpro import pipeline

        opts = common.pipeline_options(engine)
        models = pipeline.load_models(opts)
        for path in self.warm:  # kernels, compiled attention
            common.predict_in_process([path], models, opts, self.out)
        seconds = common.predict_in_process([self.input], models, opts, self.out)["seconds"]
        del models
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return seconds

    def track_speedup_vs_reference(self):
        return self._seconds("reference") / self._seconds("fast")
