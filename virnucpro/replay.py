"""What a run would take on N ranks, replayed from one run's measurements.  Pure Python.

A run records in each input's run.json (key "queue", written by pipeline._Run.write) every
range's seconds on the rank that did it, the seconds before the queue started (start-up, model
load) and each input's merge and write.  `replay` plays the engine's distribution policy
(workqueue.py) over those seconds with N ranks: one queue of ranges in input order; a rank takes
the next range when it finishes one (or, `ahead`, when it starts one: it reads the next while
the GPU works); rank 0 writes each input once all its ranges are done, in input order.  Rank 0
pays each write's seconds before its next range at every N: one rank writes between its ranges;
several write in a thread of rank 0, whose share of that process's interpreter and cores a
1-rank run cannot measure, so it is counted whole, and a prediction stays at or below N ranks.

`predicted_wall` says what every rank pays once, in parallel (the measured run's seconds outside
the replay: interpreter and imports, model load and warm-up, exit, kept as they were), what the
queue spreads (the ranges, replayed) and what N ranks add: N spawned workers and their process
group, measured where N workers can run (CPU workers: a short input with --cpu-workers N against
in-process), else `spawn_cost` from one spawned worker against one in-process run (a GPU host
with one GPU).  Left out: a
range costs what it cost on the run measured whoever takes it (no contention between ranks for
the host's memory or disk); what only N GPUs show (NCCL's group of N, N ranks reading the model
files at once), so on a GPU host the prediction is an upper bound by that much.
"""
from __future__ import annotations

import heapq
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from virnucpro import trace


@dataclass
class Input:
    ranges: list[float]  # seconds of each range, in queue order
    write: float  # merge and write of its results, on rank 0


@dataclass
class Schedule:
    wall: float  # from the process's start to the last result written
    ranges: list[tuple[int, float, float]]  # (rank, start, end) of each range, in queue order
    written: list[tuple[float, float]]  # (start, end) of each input's write


def replay(inputs: list[Input], ranks: int, before: float = 0.0, ahead: bool = False) -> Schedule:
    """The schedule of `inputs` over `ranks` ranks: times from the start of the process, the queue
    starting at `before`.  Ties go to the lower rank."""
    if ranks < 1:
        raise ValueError(f"ranks must be at least 1, got {ranks}")
    free = [before] * ranks  # when each rank has finished what it holds
    claims = [(before, r) for r in range(ranks)]  # (when a rank takes its next range, rank)
    heapq.heapify(claims)
    done: list[tuple[int, float, float]] = []
    written: list[tuple[float, float]] = []
    writer = before  # rank 0's writing thread (N > 1)
    for inp in inputs:
        last = before
        for seconds in inp.ranges:
            claimed, r = heapq.heappop(claims)
            start = max(claimed, free[r])
            end = start + seconds
            free[r] = end
            done.append((r, start, end))
            last = max(last, end)
            heapq.heappush(claims, (start if ahead else end, r))
        if ranks == 1:  # written between ranges, right after the input's last one
            begin = max(last, free[0])
            free[0] = begin + inp.write
            if not ahead:
                heapq.heappop(claims)
                heapq.heappush(claims, (free[0], 0))
        else:  # rank 0's thread writes once the ranges are done and the input before is written
            begin = max(last, writer)
            writer = begin + inp.write
            free[0] += inp.write  # and rank 0 pays those seconds before its next range
            if not ahead:
                claims = [(max(t, free[0]) if r == 0 else t, r) for t, r in claims]
                heapq.heapify(claims)
        written.append((begin, begin + inp.write))
    wall = max([*free, *(e for _, e in written), before])
    return Schedule(wall, done, written)


class Spawn(NamedTuple):
    """What spawned workers cost a run measured in one process (spawned runs of a short input
    against in-process runs of it): `startup`, from the torch import of the command (which both
    pay) to the last rank's models loaded: the workers' interpreters, imports, process group and
    model reads, work on the host's cores; `rest`, from the last result written to the end of the
    run (joining the workers, their teardown and the launcher's), mostly waiting.  The queue
    between them is left out: the replay plays it, and N workers would shorten the short input's."""
    startup: float = 0.0
    rest: float = 0.0


def phases(wall: float, path) -> tuple[float, float]:
    """(start-up, rest) of one run, as `Spawn` defines them, from its VIRNUCPRO_TRACE file and
    its wall seconds (measured from the process's start)."""
    marks = trace.read(path)

    def at(name, pick):
        return pick(m.t for m in marks if m.name == name)

    return at("models_loaded", max) - at("torch_imported", min), wall - (at("results_written", max) -
                                                                         at("process_start", min))


def measured_spawn(spawned: list, in_process: list) -> Spawn:
    """`Spawn` from runs of one short input, each a (wall seconds, VIRNUCPRO_TRACE file) pair:
    each term the median of the spawned runs' less the median of the in-process runs'."""
    def medians(runs):
        return map(statistics.median, zip(*(phases(w, t) for w, t in runs)))

    return Spawn(*(round(a - b, 4) for a, b in zip(medians(spawned), medians(in_process))))


def spawn_cost(spawn: Spawn, ranks: int, cores: int | None = None) -> float:
    """Seconds N spawned ranks add to a run measured in one process: every rank pays `spawn` at
    the same time; where the ranks outnumber the host's `cores`, their start-ups share the cores
    and take ranks / cores times as long (a measurement inside the noise adds nothing)."""
    if ranks <= 1:
        return 0.0
    share = max(1.0, ranks / cores) if cores else 1.0
    return max(spawn.startup, 0.0) * share + max(spawn.rest, 0.0)


def predicted_wall(inputs: list[Input], ranks: int, wall: float, before: float = 0.0, ahead: bool = False,
                   spawned: float = 0.0) -> float:
    """The run's wall on `ranks` ranks from its measured wall on one (in-process): what the replay
    holds is replayed, every other second of the measured run (interpreter and imports before the
    clock, model load and warm-up after it, the exit) is kept as it was, since every rank pays it
    at the same time, and `spawned`, what N spawned ranks add (spawn_cost, or where N workers can
    run, their own measured cost), is added: wall - replay(1) + replay(ranks) + spawned.  The one
    formula that both the suite (track_predicted_speedup) and scripts/probes/validate_replay.py use."""
    return wall - replay(inputs, 1, before, ahead).wall + replay(inputs, ranks, before, ahead).wall + spawned


def terms(inputs: list[Input], ranks: int, wall: float, before: float = 0.0, ahead: bool = False,
          spawned: float = 0.0) -> dict:
    """`predicted_wall` in named seconds that sum to it: `kept` (the measured run's seconds
    outside the replay), `before_queue`, `ranges` (all ranges' seconds over the ranks),
    `uneven` (the last range ends later than that: ranges that do not divide evenly, and rank 0's
    writes between its ranges), `after_last_range` (the writes still to do), `spawn`; beside
    them `writes` (every input's merge and write, on rank 0) and the count of ranges."""
    s = replay(inputs, ranks, before, ahead)
    work = sum(sum(i.ranges) for i in inputs)
    last = max((e for _, _, e in s.ranges), default=before)
    return {"kept": wall - replay(inputs, 1, before, ahead).wall, "before_queue": before, "ranges": work / ranks,
            "uneven": last - before - work / ranks, "after_last_range": s.wall - last, "spawn": spawned,
            "predicted_wall": predicted_wall(inputs, ranks, wall, before, ahead, spawned),
            "writes": sum(i.write for i in inputs), "count": sum(len(i.ranges) for i in inputs)}


def speedup(inputs: list[Input], ranks: int, wall: float, before: float = 0.0, ahead: bool = False,
            spawned: float = 0.0) -> float:
    """The measured 1-rank wall over `predicted_wall` on `ranks` ranks."""
    return wall / predicted_wall(inputs, ranks, wall, before, ahead, spawned)


def measured(out) -> tuple[list[Input], float, bool]:
    """(inputs in queue order, seconds before the queue, ahead) from the run.json files under
    `out`.  Raises ValueError when a run.json lacks the queue record (older versions)."""
    runs = [json.loads(p.read_text()) for p in sorted(Path(out).glob("*/run.json"))]
    if not runs:
        raise ValueError(f"{out}: no run.json")
    missing = [r.get("input", "?") for r in runs if "queue" not in r]
    if missing:
        raise ValueError(f"{out}: run.json without the queue's record (written by an older version): {missing[0]}")
    if any(r.get("checkpoint", {}).get("reused") for r in runs):
        raise ValueError(f"{out}: a resumed run; its reused ranges cost nothing")
    runs.sort(key=lambda r: r["queue"]["index"])
    inputs = [Input([x["end"] - x["start"] for x in sorted(r["queue"]["ranges"], key=lambda x: x["item"])],
                    r["queue"]["merge_seconds"] + r["seconds"].get("write_results", 0.0)) for r in runs]
    queues = [r["queue"] for r in runs]
    return inputs, queues[0]["before_queue_seconds"] or 0.0, bool(queues[0]["ahead"])
