"""Ranges handed from the thread that prepares an input to the one that scores it, as soon as
each is ready, so that the GPU starts on the first range while later ones are still being read
and translated.  Knows nothing about biology: a range is a span of items (chunks) in, a span of
outputs (ORFs) and where they lie in a file, out."""
from __future__ import annotations

import threading
from typing import NamedTuple


class Ready(NamedTuple):
    start: int  # first output of the range
    stop: int  # one past its last output
    path: str  # the producer's file of outputs
    offsets: tuple[int, int]  # the byte span of this range's outputs in it


class Cancelled(Exception):
    """Raised in the producer once the consumer has stopped listening, and in a consumer's
    wait for a range not yet published."""


class RangeStream:
    """`spans`: the ranges, as spans of items.  Producer: `publish(outputs_done, path, offset)`
    once the item count reaches `next_end()`, the outputs so far readable in `path` up to byte
    `offset`.  Consumer: `wait(i)` blocks until range i is ready, and raises the producer's
    exception if it failed first; `cancel()` makes the producer's next publish raise."""

    def __init__(self, spans: list[tuple[int, int]]):
        self.spans = spans
        self._ends = [b for _, b in spans]
        self._ready: list[Ready] = []
        self._at = (0, 0)  # (outputs, offset) where the next range starts
        self._error: BaseException | None = None
        self._cancelled = False
        self._cond = threading.Condition()

    def next_end(self) -> int | None:
        """The item count at which the next range is complete (None: all published)."""
        k = len(self._ready)
        return self._ends[k] if k < len(self._ends) else None

    def publish(self, outputs_done: int, path, offset: int) -> None:
        with self._cond:
            if self._cancelled:
                raise Cancelled()
            start, at = self._at
            self._ready.append(Ready(start, outputs_done, str(path), (at, offset)))
            self._at = (outputs_done, offset)
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._error = self._error or Cancelled()
            self._cond.notify_all()

    def wait(self, i: int) -> Ready:
        with self._cond:
            while len(self._ready) <= i and self._error is None:
                self._cond.wait()
            if len(self._ready) > i:
                return self._ready[i]
            raise self._error

    def complete(self) -> bool:
        return len(self._ready) == len(self.spans)
