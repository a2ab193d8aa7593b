"""Milestones of one run for the fixed-cost breakdown (scripts/gpu_report.py): with
VIRNUCPRO_TRACE=FILE set, each process appends `pid milestone unix_time` lines to FILE.
Inert otherwise."""
from __future__ import annotations

import os
import time

from virnucpro import settings

ENV = settings.TRACE


def mark(milestone: str, when: float | None = None) -> None:
    path = settings.trace_file()
    if not path:
        return
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {milestone} {time.time() if when is None else when:.4f}\n")


def read(path) -> list[tuple[int, str, float]]:
    out = []
    with open(path) as f:
        for line in f:
            pid, name, t = line.split()
            out.append((int(pid), name, float(t)))
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
