"""One queue of ranges over all inputs, shared by the ranks of a run.  Knows nothing about biology.

Every rank holds the same ordered list of work (every range of every input, inputs in order).
A rank that is free takes the next item nobody took yet, from whichever input it belongs to:
so a slow rank takes fewer, and no rank waits for the others at the end of an input.  A rank
that has saved an item adds one to its input's count of items done and leaves the item's record
(who did it, when): rank 0 writes an input once the count says all its items are saved, while
the other ranks go on scoring.

Several ranks share an atomic counter in torch.distributed's key-value store.  One process
(world size 1) keeps the same counters in a dict: the same order, no store.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from datetime import timedelta

from virnucpro.errors import WorkerError

POLL = 0.01  # seconds between looks at a count another rank moves


class Stopped(Exception):
    """Raised in a wait for a count when this process stopped listening (it failed elsewhere)."""


class Queue:
    """`key`: a prefix of this run's names in the store, the same on every rank and new for each
    run served by a process group (a persistent engine serves several)."""

    def __init__(self, rank: int, world: int, key: str, timeout: float):
        self.rank, self.key, self.timeout = rank, key, timeout
        self._counts: Counter = Counter()
        self._records: dict[str, str] = {}
        self._store = None
        if world > 1:
            import torch.distributed as dist

            # A client of the store the group's env:// rendezvous used: the TCPStore that
            # parallel.spawn's launcher hosts, or torchrun's.  Its `add` is the library's atomic
            # counter, reached at the address every rank already has (MASTER_ADDR/PORT), rather
            # than a service of our own or torch's private _get_default_store().
            self._store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                        timeout=timedelta(seconds=timeout))

    def _add(self, name: str, n: int) -> int:
        if self._store is None:
            self._counts[name] += n
            return self._counts[name]
        return int(self._store.add(f"{self.key}/{name}", n))

    def take(self) -> int:
        """The position of the next item nobody took (may be past the end: none is left)."""
        return self._add("next", 1) - 1

    def done(self, group: int, item: int, record: dict) -> int:
        """Item `item` of group `group` is saved: its record is left for rank 0, then the
        group's count of items done goes up (in that order, so a full count finds every record)."""
        text = json.dumps(record)
        if self._store is None:
            self._records[str(item)] = text
        else:
            self._store.set(f"{self.key}/record/{item}", text)
        return self._add(f"done/{group}", 1)

    def count(self, group: int) -> int:
        return self._add(f"done/{group}", 0)

    def records(self, items) -> list[dict]:
        if self._store is None:
            return [json.loads(self._records[str(i)]) for i in items]
        items = list(items)
        if not items:
            return []
        return [json.loads(v) for v in self._store.multi_get([f"{self.key}/record/{i}" for i in items])]

    def wait_done(self, group: int, count: int, stop: threading.Event, what: str) -> None:
        """Until `count` items of `group` are done.  The peer that would do one may be dead:
        the launcher (parallel.spawn, torchrun) then stops this process too, and `stop` ends the
        wait when this process failed elsewhere; a count that does not move for `timeout`
        seconds (the process group's own timeout) is a failure rather than a wait forever."""
        last, since = -1, time.monotonic()
        while True:
            got = self.count(group)
            if got >= count:
                return
            if stop.is_set():
                raise Stopped()
            now = time.monotonic()
            if got != last:
                last, since = got, now
            elif now - since > self.timeout:
                raise WorkerError(f"{what}: no range was saved for {self.timeout:.0f} s ({got} of {count} done); "
                                  "a worker is stuck or gone")
            time.sleep(POLL)
