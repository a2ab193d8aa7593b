"""What a run would take on N ranks, replayed from one run's measurements.  Pure Python.

A run records in each input's run.json (key "queue", written by pipeline._Run.write) every
range's seconds on the rank that did it, the seconds before the queue started (start-up, model
load) and each input's merge and write.  `replay` plays the engine's distribution policy
(workqueue.py) over those seconds with N ranks: one queue of ranges in input order; a rank takes
the next range when it finishes one (or, `ahead`, when it starts one: it reads the next while
the GPU works); rank 0 writes each input once all its ranges are done, in input order, in a
thread of its own when N > 1 and between its ranges when N = 1; every rank pays the start-up at
the same time.

`predicted_wall` adds what the replay does not hold (start-up before the clock, model load, exit) as
it was measured.  Left out: a range costs what it cost on the run measured whoever takes it (no contention
between ranks for the host's cores, memory or disk); the spawning of N workers and their process
group; every rank translating the inputs it takes (cheap, and overlapped with scoring).
"""
from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from pathlib import Path


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
        else:
            begin = max(last, writer)
            writer = begin + inp.write
        written.append((begin, begin + inp.write))
    wall = max([*free, *(e for _, e in written), before])
    return Schedule(wall, done, written)


def predicted_wall(inputs: list[Input], ranks: int, wall: float, before: float = 0.0, ahead: bool = False) -> float:
    """The run's wall on `ranks` ranks from its measured wall on one: what the replay holds is
    replayed, and every other second of the measured run (interpreter and imports before the
    clock, each rank's model load and warm-up after it, the exit) is kept as it was, since every
    rank pays it at the same time: wall - replay(1) + replay(ranks).  The one formula that both
    the suite (track_predicted_speedup) and scripts/probes/validate_replay.py use."""
    return wall - replay(inputs, 1, before, ahead).wall + replay(inputs, ranks, before, ahead).wall


def speedup(inputs: list[Input], ranks: int, wall: float, before: float = 0.0, ahead: bool = False) -> float:
    """The measured 1-rank wall over `predicted_wall` on `ranks` ranks."""
    return wall / predicted_wall(inputs, ranks, wall, before, ahead)


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
