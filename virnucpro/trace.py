"""Milestones of one run for the fixed-cost breakdown (scripts/gpu_report.py): with
VIRNUCPRO_TRACE=FILE set, each process appends `pid milestone unix_time [detail]` lines to FILE
(the detail, free text to the end of the line, says which range a `range_saved` was).
Inert otherwise."""
from __future__ import annotations

import os
import time
from typing import NamedTuple

from virnucpro import settings

ENV = settings.TRACE


class Mark(NamedTuple):
    pid: int
    name: str
    t: float
    detail: str = ""


def mark(milestone: str, when: float | None = None, detail: str = "") -> None:
    path = settings.trace_file()
    if not path:
        return
    tail = f" {detail}" if detail else ""
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {milestone} {time.time() if when is None else when:.4f}{tail}\n")


def read(path) -> list[Mark]:
    out = []
    with open(path) as f:
        for line in f:
            pid, name, t, *detail = line.rstrip("\n").split(" ", 3)
            out.append(Mark(int(pid), name, float(t), *detail))
    return out


def process_started_unix() -> float | None:
    """When this process started (Linux: from /proc, to 10 ms), however it was launched: the
    interpreter's own start-up and imports count towards a run's start-up seconds."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
