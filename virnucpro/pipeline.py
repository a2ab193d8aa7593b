"""`predict`'s driver: FASTA -> chunks -> ORFs -> DNABERT-S + ESM-2 embeddings -> MLP -> verdicts,
over ranks, checkpointed ranges and inputs.  It knows the stages (inputs.py, scoring.py) only
by their functions.

The command reads and validates every input before any model loads or anything is written,
so a bad file costs nothing and leaves OUT untouched.  Models load once per invocation, while
the first input is chunked and translated.  ORFs are scored in ranges of chunks (see
checkpoint.py), each scored as soon as its chunks are translated and saved as soon as it is done.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from virnucpro import checkpoint, embed, faults, parallel, perf, settings, trace  # noqa: F401
from virnucpro.inputs import SKIP_EMPTY, SKIP_NO_ORF, InputData, StageClock, output_stem, prepare, read_inputs  # noqa: F401
from virnucpro.scoring import (Models, NonFiniteError, Prediction, _bar, _classify, classify, load_models,  # noqa: F401
                               resolve_precision)
from virnucpro.spool import read_orfs
from virnucpro.stream import RangeStream


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


def streams(opts: Options, device: torch.device) -> bool:
    return opts.stream if opts.stream is not None else device.type == "cuda"


def _produce(data: InputData, chunk_len: int, clock: StageClock, spool_dir: Path, keep: bool,
             stream: RangeStream) -> InputData:
    try:
        return prepare(data, chunk_len, clock, spool_dir, keep, stream)
    except BaseException as e:
        stream.fail(e)
        raise


def _take(data: InputData, stream: RangeStream, i: int, models: Models, store: checkpoint.Store, keep: bool):
    """Range i once it is translated: (a, b, its ORFs, their DNABERT-S and ESM-2 token lists);
    no ORFs when an earlier run's file holds its scores, None when its chunks have none."""
    ready = stream.wait(i)
    a, b = ready.start, ready.stop
    if a == b:
        return None  # chunks without a stop-free frame: listed as skipped, nothing to score
    orfs = read_orfs(ready.path, *ready.offsets)
    if store.reusable(data, a, b, orfs, keep):
        return a, b, None, None
    return a, b, orfs, (models.dna.token_lists([o.nucleotide for o in orfs]),
                        models.protein.token_lists([o.protein for o in orfs]))


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _score_ranges(data: InputData, stream: RangeStream, mine, models: Models, store: checkpoint.Store,
                  progress: bool, clock: StageClock, keep: bool, main: bool, ahead: bool) -> int:
    """Scores this rank's ranges as they come out of translation; returns how many were reused
    from an earlier run's files instead.  `ahead`: one thread reads and tokenises the next range
    while this one is on the GPU, which would otherwise wait for the host between ranges."""
    reused, mine = 0, list(mine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="virnucpro-tokenize") if ahead else nullcontext() as pool, \
            _bar(None, "DNABERT-S", "ORF", progress) as dbar, _bar(None, "ESM-2", "ORF", progress) as pbar:
        def take(i):
            args = (data, stream, i, models, store, keep)
            return pool.submit(_take, *args) if ahead else _Done(_take(*args))

        try:
            coming = take(mine[0]) if mine else None
            for k in range(len(mine)):
                with clock("wait_for_translation"):
                    got = coming.result()
                if k + 1 < len(mine):
                    coming = take(mine[k + 1])
                if got is None:
                    continue
                a, b, orfs, tokens = got
                if orfs is None:
                    reused += 1
                    continue
                part = _classify(orfs, models, clock, dbar.update, pbar.update, tokens=tokens)
                with clock("checkpoint"):
                    store.save(data, a, b, part, keep, orfs)
                    if main:
                        store.note(data.stem)
        except BaseException:
            stream.cancel()  # the range being read ahead stops waiting, and so does translation
            raise
    return reused


def _agree_on_budgets(models: Models, opts: Options, store: checkpoint.Store, r: parallel.Rank) -> None:
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
    for k, e in auto.items():
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
        """Predict every input; called once per rank.  Rank 0 decides which ranges are still to
        do and deals them out, every rank saves what it scores, rank 0 merges the saved ranges
        and writes the results.  Returns, on rank 0, one summary line per input."""
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
        clocks = [StageClock() for _ in inputs]
        lines, first = [], time.perf_counter()
        # One thread reads, chunks and translates the inputs in turn, and hands each range over
        # as soon as its chunks are translated: the models load while the first range is
        # prepared, and the GPU scores it while later ones are.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="virnucpro-prepare") as pool:
            def submit(k):
                data = inputs[k]
                stream = RangeStream(store.ranges(data.chunk_count(opts.chunk_len)))
                clock = StageClock()  # the other thread's stages: a clock is used by one thread at a time
                return stream, clock, pool.submit(_produce, data, opts.chunk_len, clock,
                                                  store.spool_dir(data.stem, r.rank), keep_intermediate, stream)

            coming = submit(0) if inputs else None
            if inputs:
                self._load(store)
            for k, data in enumerate(inputs):
                t0 = time.perf_counter()
                prepared = coming
                if k + 1 < len(inputs):
                    coming = submit(k + 1)  # starts once this input is translated
                try:
                    line = self._input(data, prepared, clocks[k], (first, t0), store, run_info, keep_intermediate,
                                       out)
                finally:
                    prepared[0].cancel()
                    wait([prepared[2]])
                    if data.spool is not None:
                        data.spool.remove()
                if line:
                    lines.append(line)
                if not self.persistent:
                    self.models = None  # each input loads its own, as --no-persistent-models asks
        parallel.barrier(r)
        return lines

    def _load(self, store: checkpoint.Store) -> None:
        if self.models is None:
            self.models = load_models(self.opts)
            if self.models.device.type == "cpu":  # the ranks of a node share its cores
                torch.set_num_threads(settings.cpu_threads(self.rank.world))
        _agree_on_budgets(self.models, self.opts, store, self.rank)

    def _input(self, data: InputData, prepared, clock: StageClock, started: tuple[float, float], store,
               run_info: dict, keep_intermediate: bool, out: Path):
        """Score one prepared input (this rank's ranges) and, on rank 0, merge and write its
        results; returns rank 0's summary line."""
        from virnucpro.outputs import write_result_dir

        r = self.rank
        stream, prep_clock, translated = prepared
        if parallel.broadcast(store.finished(data.stem) if r.is_main else None, r):
            return f"{data.path}: finished by an earlier run -> {out / data.stem}" if r.is_main else None
        if r.is_main:
            store.start(data.stem, stream.spans[-1][1] if stream.spans else 0, len(stream.spans))
        if self.models is None:
            self._load(store)
        models = self.models
        mine = range(r.rank, len(stream.spans), r.world)
        streamed = streams(self.opts, models.device)
        if not streamed:
            translated.result()
        reused = _score_ranges(data, stream, mine, models, store, self.opts.progress and r.is_main, clock,
                               keep_intermediate, r.is_main, ahead=streamed)
        translated.result()  # every chunk cut and listed, on every rank
        per_rank = parallel.gather((clock.seconds, reused), r)
        if not r.is_main:
            return None
        with clock("gather"):
            spans = [(x.start, x.stop) for x in map(stream.wait, range(len(stream.spans))) if x.stop > x.start]
            cols = store.load(data, spans, models.dna.dim + models.protein.dim, keep_intermediate)
        faults.point("merge")
        pred = Prediction(cols["logits"], cols["probs"], cols["features"])
        seconds = {**models.seconds, **prep_clock.seconds, **clock.seconds}
        if r.world > 1:
            seconds["per_rank"] = [s for s, _ in per_rank]
        first, t0 = started  # perf_counter at the first input, and at this one
        info = {**run_info, "device": str(models.device), "weights": models.weights, "world_size": r.world,
                "persistent_models": self.persistent,
                "batch_tokens": {"dnabert": models.dna.batch_tokens, "esm2": models.protein.batch_tokens},
                "checkpoint": {"ranges": len(stream.spans), "reused": sum(n for _, n in per_rank)},
                # by this process so far: more than after the first input means a recompilation
                "compiled_graphs": perf.compiled_graphs(),
                "seconds": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in seconds.items()},
                "total_seconds": round(time.perf_counter() - t0, 3),
                # from the first input's scoring (after start-up) to this input's results
                "seconds_since_first_input": round(time.perf_counter() - first, 3)}
        final, viral = write_result_dir(out, data, pred, info, models.random, keep_intermediate)
        trace.mark("results_written")
        store.finish(data.stem, len(data.orfs))
        self.history.append({"stem": data.stem, "orfs": len(data.orfs), "seconds": info["total_seconds"],
                             "esm_tokens": data.protein_tokens, "stage_seconds": clock.seconds})
        return (f"{data.path}: {len(data.records)} sequences, {len(data.chunks)} chunks, {len(data.orfs)} ORFs, "
                f"{viral} chunks called viral, {len(data.skipped)} skipped -> {final}")


def run(paths: list, out: Path, opts: Options, run_info: dict, keep_intermediate: bool = False,
        persistent: bool = True, r: parallel.Rank = parallel.Rank()) -> list[str]:
    """One rank's whole run (see Engine.run)."""
    return Engine(opts, r, persistent).run(paths, out, run_info, keep_intermediate)
