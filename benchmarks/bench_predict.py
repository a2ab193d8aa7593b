"""End to end: `virnucpro predict` as a user runs it, in a subprocess."""
import shutil
import tempfile
import time

from . import common


def _warm_up():
    # Page cache, kernel caches and the dataset itself: not part of what is timed.
    try:
        common.require_devices(1)
    except NotImplementedError:
        return
    w = common.workload()
    out = tempfile.mkdtemp(prefix="virnucpro-warmup-")
    try:
        common.run(common.predict_command([w["files"][-1]], out, 1), w["timeout"])
    finally:
        shutil.rmtree(out, ignore_errors=True)


class TimePredict:
    """Wall time of a whole run over several input files (the genome in parts plus a file of 150 bp reads).
    persistent_models=False reloads the models for every input file."""
    params = [common.N_GPUS, [True, False]]
    param_names = ["n_gpus", "persistent_models"]
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0
    timeout = common.profile()["timeout"]

    def setup_cache(self):
        _warm_up()

    def setup(self, n_gpus, persistent_models):
        common.require_devices(n_gpus)
        self.out = tempfile.mkdtemp(prefix="virnucpro-bench-")
        extra = [] if persistent_models else ["--no-persistent-models"]
        self.cmd = common.predict_command(common.workload()["files"], self.out, n_gpus, extra)

    def teardown(self, n_gpus, persistent_models):
        if hasattr(self, "out"):  # setup may have skipped before making it
            shutil.rmtree(self.out, ignore_errors=True)

    def time_predict(self, n_gpus, persistent_models):
        common.run(self.cmd, self.timeout)


class TrackSpeedupVsReference:
    """End-to-end speedup of the default engine over `--engine reference` (the original recipe:
    fp32, DNABERT-S one sequence per forward, ESM-2 in 2048-token batches), same host, same data."""
    unit = "x"
    timeout = common.profile()["timeout"]

    def setup(self):
        common.require_devices(1)
        self.out = tempfile.mkdtemp(prefix="virnucpro-bench-")
        self.input = [common.workload()["reference"]]

    def teardown(self):
        if hasattr(self, "out"):  # setup may have skipped before making it
            shutil.rmtree(self.out, ignore_errors=True)

    def _time(self, extra):
        t0 = time.perf_counter()
        common.run(common.predict_command(self.input, self.out, 1, extra), self.timeout)
        return time.perf_counter() - t0

    def track_speedup_vs_reference(self):
        self._time([])  # warm-up
        return self._time(["--engine", "reference"]) / self._time([])
