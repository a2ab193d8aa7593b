"""`predict`'s driver: FASTA -> chunks -> ORFs -> DNABERT-S + ESM-2 embeddings -> MLP -> verdicts,
over ranks, checkpointed ranges and inputs.  It knows the stages (inputs.py, scoring.py) only
by their functions.

The command reads and validates every input before any model loads or anything is written,
so a bad file costs nothing and leaves OUT untouched.  Models load once per invocation, while
the first input is chunked and translated.  ORFs are scored in ranges of chunks (see
checkpoint.py), each scored as soon as its chunks are translated and saved as soon as it is done.
The ranges of all inputs form one queue (workqueue.py) that the ranks pull from: serving.py is
that loop, writing.py writes an input once its ranges are saved.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

# Some of these are here for the callers (the suite, gpu_report, tests) that take them from the driver.
from virnucpro import checkpoint, embed, parallel, settings, trace, workqueue  # noqa: F401
from virnucpro.inputs import SKIP_EMPTY, SKIP_NO_ORF, InputData, StageClock, output_stem, prepare, read_inputs  # noqa: F401
from virnucpro.scoring import Models, NonFiniteError, Prediction, classify, load_models, resolve_precision  # noqa: F401
from virnucpro.serving import _Run, streams  # noqa: F401


@dataclass
class Options:
    chunk_len: int = 500
    classifier: str | None = None
    dnabert: str = "zhihan1996/DNABERT-S"
    esm: str = "esm2_t36_3B_UR50D"
    random_weights: bool = False
    preset: str = "full"
    device: str = "auto"
    precision: str = "auto"
    dna_batch_tokens: int | None = None
    esm_batch_tokens: int | None = None
    seed: int = 0
    progress: bool = True
    compile: bool = False
    # Score a range while later ones are translated (None: on a GPU).  On the CPU the two share
    # the cores, and with both busy a CPU run's last bits were seen to change from run to run
    # (tests/test_cli.py's pipe tests under load), which resume's byte-identity cannot allow.
    stream: bool | None = None
    # Steps of whole 1024-token blocks (runner.ROW_BLOCK), so that a row's bits do not follow its
    # batch; off for the reference engine, which keeps the original's batches as they were.
    row_blocks: bool = True


def _agree_on_budgets(models: Models, opts: Options, store: checkpoint.Store, r: parallel.Rank) -> dict:
    """An automatic token budget depends on free GPU memory, and batches of another size round
    differently.  So every rank, and every resume, uses the budget rank 0 chose first (kept in
    the manifest): a range then gets the same batches whoever computes it."""
    auto = {k: e for k, e, given in (("dnabert", models.dna, opts.dna_batch_tokens),
                                     ("esm2", models.protein, opts.esm_batch_tokens)) if given is None}
    if r.is_main and any(k not in store.manifest.get("auto_batch_tokens", {}) for k in auto):
        chosen = store.manifest.setdefault("auto_batch_tokens", {})
        for k, e in auto.items():
            chosen.setdefault(k, e.batch_tokens)
        store.write_manifest()
    chosen = parallel.broadcast(store.manifest.get("auto_batch_tokens", {}) if r.is_main else None, r)
    _use_budgets(models, opts, chosen)
    return chosen


def _use_budgets(models: Models, opts: Options, chosen: dict) -> None:
    for k, e, given in (("dnabert", models.dna, opts.dna_batch_tokens), ("esm2", models.protein, opts.esm_batch_tokens)):
        if given is None:
            e.batch_tokens = chosen[k]


class Engine:
    """A run in this process: its options, its rank and the loaded models, kept across inputs
    and across calls unless `persistent` is off.  Serves one or many inputs into an OUT whose
    checkpoint session (lock and manifest) the caller holds, or `predict` opens one.  The CLI
    (each rank), the asv suite and gpu_report all drive this one path."""

    def __init__(self, opts: Options, rank: parallel.Rank = parallel.Rank(), persistent: bool = True,
                 models: Models | None = None):
        self.opts, self.rank, self.persistent, self.models = opts, rank, persistent, models
        self.history: list[dict] = []  # rank 0: one entry per input written, for benchmarks
        self._calls = 0  # runs served: each gets its own names in the group's store
        self._budgets: dict | None = None  # the token budgets the ranks agreed on, kept for reloads

    def predict(self, paths: list, out: Path, run_info: dict | None = None, keep_intermediate: bool = False,
                every: int = 8192) -> list[str]:
        """A fresh run into `out` under its own checkpoint session (single process); like
        `predict --force`, it replaces the results of the run recorded there before."""
        inputs = [p if isinstance(p, InputData) else read_inputs([p])[0] for p in paths]
        fields = {"engine": "in-process", "inputs": [{"name": d.stem, "sha256": d.sha256} for d in inputs],
                  "t": time.time()}
        try:
            with checkpoint.Store(out).session(fields, {"every": every}, resume=False):
                return self.run(inputs, out, run_info or {}, keep_intermediate)
        finally:
            for d, p in zip(inputs, paths):
                if d is not p:
                    d.release()

    def run(self, paths: list, out: Path, run_info: dict, keep_intermediate: bool = False) -> list[str]:
        """Predict every input; called once per rank.  Every range of every input still to do
        is in one queue (workqueue.py), in input order; each rank takes the next free range,
        scores it (or finds it saved by an earlier run) and saves it; rank 0 merges and writes
        each input once all its ranges are saved.  Returns, on rank 0, one summary line per input."""
        opts, r = self.opts, self.rank
        parallel.init_group(r, opts.device == "cuda" or (opts.device == "auto" and torch.cuda.is_available()))
        trace.mark("process_group")
        started = run_info.get("started_unix")
        # Interpreter, imports, spawned workers and the process group, before any input is scored.
        run_info = {**run_info, "startup_seconds": round(time.time() - started, 3) if started else None}
        store = checkpoint.Store(out)
        store.manifest = parallel.broadcast(store.read_manifest() if r.is_main else None, r)
        # The command has read and validated the inputs once; a caller may still pass paths.
        inputs = [p if isinstance(p, InputData) else read_inputs([p])[0] for p in paths]
        finished = parallel.broadcast([store.finished(d.stem) for d in inputs] if r.is_main else None, r)
        layouts = [store.ranges(d.chunk_count(opts.chunk_len)) for d in inputs]
        todo = [k for k in range(len(inputs)) if not finished[k]]
        if r.is_main:
            for k in todo:
                store.start(inputs[k].stem, layouts[k][-1][1] if layouts[k] else 0, len(layouts[k]))
        self._calls += 1
        origin = parallel.broadcast(time.time() if r.is_main else None, r)
        queue = workqueue.Queue(r.rank, r.world, f"virnucpro/{store.manifest['run']}/{self._calls}",
                                parallel.timeout_seconds())
        run = _Run(self, store, out, inputs, layouts, todo, queue, origin, started, run_info, keep_intermediate)
        try:
            run.serve()
        finally:
            run.close()
        parallel.barrier(r)
        if not r.is_main:
            return []
        return [f"{d.path}: finished by an earlier run -> {out / d.stem}" if finished[k] else run.lines[k]
                for k, d in enumerate(inputs)]

    def _load(self, store: checkpoint.Store) -> None:
        """The models, and the token budgets all ranks agree on: collective, once per run."""
        if self.models is None:
            self._reload()
        self._budgets = _agree_on_budgets(self.models, self.opts, store, self.rank)

    def _reload(self) -> None:
        self.models = load_models(self.opts)
        if self.models.device.type == "cpu":  # the ranks of a node share its cores
            torch.set_num_threads(settings.cpu_threads(self.rank.world))
        if self._budgets is not None:
            _use_budgets(self.models, self.opts, self._budgets)


def run(paths: list, out: Path, opts: Options, run_info: dict, keep_intermediate: bool = False,
        persistent: bool = True, r: parallel.Rank = parallel.Rank()) -> list[str]:
    """One rank's whole run (see Engine.run)."""
    return Engine(opts, r, persistent).run(paths, out, run_info, keep_intermediate)
