"""Fault injection for the reliability tests; inert unless VIRNUCPRO_TEST_FAULT is set.

The value is a comma-separated list of POINT:N[:ACTION][@RANK]: the N-th time (N = * for
every time) this process passes POINT, it does ACTION.  Counting per process keeps a
fault reproducible however many ranks run.  Points: chunking, dnabert, esm2, predict
(after each stage of one ORF range), checkpoint (a range's file is written but not yet
renamed into place), merge, write (result files half written), step (one forward step).
Actions: kill (SIGKILL, the default), stop (SIGSTOP), raise, enospc, oom, and sleepS, which
sleeps S seconds (esm2:*:sleep0.3: every ESM-2 range takes 0.3 s more), so that a test or
scripts/probes/validate_replay.py gives ranges known durations or makes one rank slow.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from collections import Counter

from virnucpro import settings

ENV = settings.TEST_FAULT
_hits: Counter = Counter()


def _parse(spec: str):
    for item in filter(None, (s.strip() for s in spec.split(","))):
        item, _, rank = item.partition("@")
        name, count, action = (item.split(":") + ["kill"])[:3]
        yield name, count, action, rank


def point(name: str, path=None) -> None:
    spec = settings.test_fault()
    if not spec:
        return
    _hits[name] += 1
    for want, count, action, rank in _parse(spec):
        if want != name or (rank and rank != settings.rank_name()):
            continue
        if count == "*" or int(count) == _hits[name]:
            _act(action, name, path)


def _act(action: str, name: str, path) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action == "raise":
        raise RuntimeError(f"injected fault at {name}")
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    elif action == "oom":
        import torch

        raise torch.cuda.OutOfMemoryError(f"injected out of memory at {name}")
    elif action.startswith("sleep"):
        try:
            seconds = float(action[len("sleep"):])
        except ValueError:
            raise ValueError(f"{ENV}: {action!r}: expected sleep and seconds, like sleep0.3") from None
        time.sleep(seconds)
    else:
        raise ValueError(f"{ENV}: unknown action {action!r}")
