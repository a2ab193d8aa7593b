"""The queue's service loop: one call of Engine.run on one rank.  Every range of every input still
to do is in one queue (workqueue.py), in input order; the rank takes the next free range, waits
for its chunks to be translated (one thread prepares the inputs in turn, a range handed over as
soon as it is done), scores it or finds it saved by an earlier run, saves it and counts it done.
On rank 0 each input is written (writing.py) once all its ranges are saved."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import nullcontext
from pathlib import Path

import torch

from virnucpro import checkpoint, trace
from virnucpro.inputs import InputData, StageClock, prepare
from virnucpro.scoring import Models, _bar, _classify
from virnucpro.spool import read_orfs
from virnucpro.stream import RangeStream
from virnucpro.writing import write_input


def streams(opts, device: torch.device) -> bool:
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


class _Run:
    """One call of Engine.run on one rank: the queue's order, this rank's share of it, and on rank 0
    the writing of each input as soon as it is complete: in a thread while this rank scores when
    there are several ranks; with one, right after the input's last range, as a run always did."""

    def __init__(self, engine, store, out, inputs, layouts, todo, queue, origin, started, run_info, keep):
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
        write_input(self, k)
