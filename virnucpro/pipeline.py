"""`predict`'s driver: FASTA -> chunks -> ORFs -> DNABERT-S + ESM-2 embeddings -> MLP -> verdicts,
over ranks, checkpointed ranges and inputs.  It knows the stages (inputs.py, scoring.py) only
by their functions.

The command reads and validates every input before any model loads or anything is written,
so a bad file costs nothing and leaves OUT untouched.  Models load once per invocation, while
the first input is chunked and translated.  ORFs are scored in ranges of chunks (see
checkpoint.py), each scored as soon as its chunks are translated and saved as soon as it is done.
The ranges of all inputs form one queue (workqueue.py) that the ranks pull from.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from virnucpro import checkpoint, embed, faults, parallel, perf, settings, trace, workqueue  # noqa: F401
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


class _Run:
    """One call of Engine.run on one rank: the queue's order, this rank's share of it, and on rank 0
    the writing of each input as soon as it is complete: in a thread while this rank scores when
    there are several ranks; with one, right after the input's last range, as a run always did."""

    def __init__(self, engine: Engine, store, out, inputs, layouts, todo, queue, origin, started, run_info, keep):
        self.engine, self.store, self.out, self.inputs, self.layouts = engine, store, out, inputs, layouts
        self.queue, self.origin, self.run_info, self.keep = queue, origin, run_info, keep
        self.r = engine.rank
        self.order = [(k, i) for k in todo for i in range(len(layouts[k]))]
        self.first_item: dict = {}  # input -> the queue position of its first range
        for q, (k, _) in enumerate(self.order):
            self.first_item.setdefault(k, q)
        self.todo = todo
        self.before_queue = round(origin - started, 3) if started else None  # start-up, before any range
        self.clocks = {k: StageClock() for k in todo}
        self.preps: dict = {}  # input -> (RangeStream, its StageClock, the future of its preparation)
        self.lines: dict = {}
        self.written = 0  # of `todo`, by write_ready
        self.submitted = 0  # of `todo`, for preparation
        self.released: set = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()  # the prepared inputs, and the manifest (rank 0's two threads)
        self.t_first = time.perf_counter()
        self.ahead = False  # set by score(): ranges read ahead while one is on the GPU
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="virnucpro-prepare")

    def prepared(self, k: int):
        """Input k's preparation, submitted with those before it and the next: one thread reads,
        chunks and translates the inputs in turn, each handing its ranges over as they are done."""
        with self.lock:
            while self.submitted < len(self.todo) and self.todo[max(0, self.submitted - 1)] <= k:
                j = self.todo[self.submitted]
                data = self.inputs[j]
                stream = RangeStream(self.layouts[j])
                clock = StageClock()  # the other thread's stages: a clock is used by one thread at a time
                self.preps[j] = (stream, clock, self.pool.submit(
                    _produce, data, self.engine.opts.chunk_len, clock,
                    self.store.spool_dir(data.stem, self.r.rank), self.keep, stream))
                self.submitted += 1
            return self.preps[k]

    def release(self, k: int) -> None:
        """This rank is done with input k: its preparation stops and its spool goes."""
        with self.lock:
            if k in self.released or k not in self.preps:
                return
            self.released.add(k)
        stream, _, fut = self.preps[k]
        stream.cancel()
        wait([fut])
        if self.inputs[k].spool is not None:
            self.inputs[k].spool.remove()

    def close(self) -> None:
        self.stop.set()
        for k in list(self.preps):
            self.release(k)
        self.pool.shutdown()

    def serve(self) -> None:
        engine, r = self.engine, self.r
        if self.order:
            self.prepared(self.order[0][0])
        if self.todo:
            engine._load(self.store)  # while the first input is prepared
        writer = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="virnucpro-write") if r.is_main and r.world > 1 \
                else nullcontext() as writing:
            if writing is not None:
                writer = writing.submit(self.write_all)
            try:
                self.score(writer)
                if writer is not None:
                    writer.result()
                elif self.r.is_main:
                    self.write_ready()
            except BaseException:
                self.stop.set()
                raise

    def write_all(self) -> None:
        for k in self.todo:
            self.write(k)

    def write_ready(self) -> None:
        """One process: every input whose ranges are all saved, in order, before the next range."""
        while self.written < len(self.todo):
            k = self.todo[self.written]
            if self.queue.count(k) < len(self.layouts[k]):
                return
            self.write(k)
            self.written += 1

    def score(self, writer) -> None:
        """Takes ranges off the queue until none is left.  `ahead` (streamed runs): the next range
        is taken and read and tokenised in a thread while this one is on the GPU."""
        engine, opts, r, store = self.engine, self.engine.opts, self.r, self.store
        ahead = streams(opts, engine.models.device) if engine.models is not None else False
        self.ahead = ahead
        progress = opts.progress and r.is_main
        last = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="virnucpro-tokenize") if ahead else nullcontext() as pool, \
                _bar(None, "DNABERT-S", "ORF", progress) as dbar, _bar(None, "ESM-2", "ORF", progress) as pbar:
            def claim():
                q, claimed = self.queue.take(), time.time()
                if q >= len(self.order):
                    return None
                k, i = self.order[q]
                stream, _, fut = self.prepared(k)
                if not ahead:
                    fut.result()  # on the CPU an input is translated before it is scored
                args = (self.inputs[k], stream, i, engine.models, store, self.keep)
                return q, claimed, pool.submit(_take, *args) if ahead else _Done(_take(*args))

            if writer is None and r.is_main:
                self.write_ready()  # inputs without a range (no chunk) ahead of the first range
            coming = claim()
            while coming is not None:
                if writer is not None and writer.done():
                    writer.result()  # rank 0's writing failed: the run fails now
                q, claimed, got = coming
                k, i = self.order[q]
                # when this rank began on the range: as it took it, or, read ahead, as the one before ended
                t0 = time.time() if ahead else claimed
                if k != last:
                    if last is not None and not r.is_main:
                        self.release(last)  # the queue is in input order: this rank needs it no more
                    if last is not None and not engine.persistent:
                        engine._reload()  # each input loads its own, as --no-persistent-models asks
                    last = k
                data, clock, stream = self.inputs[k], self.clocks[k], self.preps[k][0]
                try:
                    with clock("wait_for_translation"):
                        got = got.result()
                    coming = claim() if ahead else None
                    record = {"item": q, "range": list(self.layouts[k][i]), "rank": r.rank}
                    if got is None:
                        record.update(orfs=0, skipped=True)
                    else:
                        a, b, orfs, tokens = got
                        record.update(orfs=b - a, reused=orfs is None)
                        if orfs is not None:
                            record["esm2_tokens"] = sum(map(len, tokens[1]))
                            part = _classify(orfs, engine.models, clock, dbar.update, pbar.update, tokens=tokens)
                            with clock("checkpoint"):
                                store.save(data, a, b, part, self.keep, orfs)
                                trace.mark("range_saved", detail=f"{r.rank} {a}-{b} {data.stem}")
                                if r.is_main:
                                    with self.lock:
                                        store.note(data.stem)
                except BaseException:
                    stream.cancel()  # the range being read ahead stops waiting, and so does translation
                    raise
                t1 = time.time()
                record.update(claimed=round(claimed - self.origin, 4), start=round(t0 - self.origin, 4),
                              end=round(t1 - self.origin, 4))
                self.queue.done(k, q, record)
                if writer is None and r.is_main:
                    self.write_ready()  # one process: the input's last range was this one
                if not ahead:
                    coming = claim()

    def write(self, k: int) -> None:
        """Rank 0: input k's results, once every one of its ranges is saved."""
        from virnucpro.outputs import write_result_dir

        engine, store, data, clock = self.engine, self.store, self.inputs[k], self.clocks[k]
        n = len(self.layouts[k])
        self.queue.wait_done(k, n, self.stop, f"input {data.path}")
        stream, prep_clock, translated = self.prepared(k)
        translated.result()  # every chunk cut and listed
        t0 = time.perf_counter()
        first = self.first_item.get(k)
        records = self.queue.records(range(first, first + n)) if n else []
        models = engine.models
        with clock("gather"):
            spans = [(x.start, x.stop) for x in map(stream.wait, range(n)) if x.stop > x.start]
            cols = store.load(data, spans, models.dna.dim + models.protein.dim, self.keep)
        faults.point("merge")
        pred = Prediction(cols["logits"], cols["probs"], cols["features"])
        seconds = {**models.seconds, **prep_clock.seconds, **clock.seconds}
        begun = min((x["start"] for x in records), default=None)
        info = {**self.run_info, "device": str(models.device), "weights": models.weights, "world_size": self.r.world,
                "persistent_models": engine.persistent,
                "batch_tokens": {"dnabert": models.dna.batch_tokens, "esm2": models.protein.batch_tokens},
                "checkpoint": {"ranges": n, "reused": sum(bool(x.get("reused")) for x in records)},
                # by this process so far: more than after the first input means a recompilation
                "compiled_graphs": perf.compiled_graphs(),
                "seconds": {name: (round(v, 4) if isinstance(v, float) else v) for name, v in seconds.items()},
                # from this input's first range taken to its results (inputs overlap in the queue)
                "total_seconds": round(time.time() - self.origin - begun, 3) if begun is not None else
                round(time.perf_counter() - t0, 3),
                # from the first input's scoring (after start-up) to this input's results
                "seconds_since_first_input": round(time.perf_counter() - self.t_first, 3),
                # what virnucpro/replay.py replays: times in seconds from the queue's start
                "queue": {"ranks": self.r.world, "ahead": self.ahead,
                          "before_queue_seconds": self.before_queue, "index": k, "first_item": first,
                          "merge_seconds": round(time.perf_counter() - t0, 4), "ranges": records}}
        final, viral = write_result_dir(self.out, data, pred, info, models.random, self.keep)
        trace.mark("results_written")
        with self.lock:
            store.finish(data.stem, len(data.orfs))
        engine.history.append({"stem": data.stem, "orfs": len(data.orfs), "seconds": info["total_seconds"],
                               "esm_tokens": data.protein_tokens, "stage_seconds": clock.seconds})
        self.lines[k] = (f"{data.path}: {len(data.records)} sequences, {len(data.chunks)} chunks, "
                         f"{len(data.orfs)} ORFs, {viral} chunks called viral, {len(data.skipped)} skipped -> {final}")
        self.release(k)


def run(paths: list, out: Path, opts: Options, run_info: dict, keep_intermediate: bool = False,
        persistent: bool = True, r: parallel.Rank = parallel.Rank()) -> list[str]:
    """One rank's whole run (see Engine.run)."""
    return Engine(opts, r, persistent).run(paths, out, run_info, keep_intermediate)
