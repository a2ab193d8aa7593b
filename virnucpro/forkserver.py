"""Workers forked from a server that imported torch at the same time as the launcher.

A spawned worker starts an interpreter and imports torch (1-2 s) only once the launcher has
imported it, read the GPU count and opened the session: on an N-GPU run that is the start-up the
1-GPU run does not pay (docs/PERFORMANCE.md, issue 29).  `start` launches multiprocessing's fork
server before the launcher imports torch, the server importing torch and the engine meanwhile;
each worker is then a fork of it.  Nothing here imports torch.  Used where
VIRNUCPRO_EARLY_WORKERS=1 (settings.early_workers).
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver as _server
import os
import signal
from contextlib import suppress

PRELOAD = ["virnucpro.forkserver_guard", "torch", "torch.distributed", "virnucpro.cli", "virnucpro.pipeline"]


def die_with_parent() -> bool:
    """SIGKILL this process when the thread that started it exits (prctl PR_SET_PDEATHSIG);
    False where that cannot be set (not Linux).  For a spawned or forked worker and for the fork
    server itself; here because neither the server's preload nor this module may import torch."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        return False
    return True


def start() -> None:
    """The fork server, importing PRELOAD in its own process; returns at once."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    _server.ensure_running()


def pid() -> int | None:
    """The fork server's process id (a worker's parent) once `start` ran, else None."""
    return getattr(_server._forkserver, "_forkserver_pid", None)


def stop() -> None:
    """End the fork server once its workers have ended (they die with it: PR_SET_PDEATHSIG).
    Killed, not asked: its own exit would tear torch down for half a second, which a caller
    reading the launcher's output (a pipe the server holds too) would wait for."""
    server = pid()
    if server is None:
        return
    with suppress(OSError):
        os.kill(server, signal.SIGKILL)
    _server._forkserver._stop()  # reaps it and forgets it: a later `start` starts another
