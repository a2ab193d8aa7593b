"""One process per GPU: sharding, spawning, gathering.  Knows nothing about biology.

Both ways of running several processes share one code path: `--gpus` spawns workers
that form a torch.distributed group on localhost, exactly as `torchrun` would have
started them.  Every rank holds the same (deterministic) work list; `predict`'s ranks take
its items one at a time from a shared queue (workqueue.py), rank 0 decides and broadcasts.
A worker that fails takes the others down at once (`spawn`), and a killed main process takes
its workers with it.
"""
from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from virnucpro import forkserver, settings, trace
from virnucpro.errors import InputError, WorkerError


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def parse_gpus(spec: str, available: int) -> list[int]:
    """'all', a count 'N' (the first N), or a list '0,2,5' of physical indices."""
    spec = spec.strip().lower()
    if available < 1:
        raise InputError(f"--gpus {spec}: no CUDA GPU is visible")
    if spec == "all":
        return list(range(available))
    if "," not in spec:
        try:
            n = int(spec)
        except ValueError:
            raise InputError(f"--gpus {spec}: expected 'all', a count, or a list like 0,2,5") from None
        if not 1 <= n <= available:
            raise InputError(f"--gpus {spec}: asked for {n} GPUs, {available} visible")
        return list(range(n))
    try:
        ids = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--gpus {spec}: expected 'all', a count, or a list like 0,2,5") from None
    bad = [i for i in ids if not 0 <= i < available]
    if bad or len(set(ids)) != len(ids) or not ids:
        raise InputError(f"--gpus {spec}: GPU ids must be distinct and in 0..{available - 1}")
    return ids


def shard(lengths, world: int) -> list[np.ndarray]:
    """Split items so every rank gets the same mix of lengths: sort by length, deal in a
    snake order (0,1,..,w-1,w-1,..,0), so each rank's token count is within one item of the others."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    pos = np.arange(len(order)) % (2 * world)
    owner = np.where(pos < world, pos, 2 * world - 1 - pos)
    return [np.sort(order[owner == r]) for r in range(world)]


def rank_from_env() -> Rank | None:
    """Set when started by torchrun or by our own spawn."""
    found = settings.rank_env()
    return None if found is None else Rank(*found)


def init_group(r: Rank, use_cuda: bool) -> None:
    if r.world > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(r.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")


def broadcast(obj, r: Rank):
    """Rank 0's object on every rank: one decision instead of each rank reading shared state
    at a slightly different moment."""
    if r.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(r: Rank) -> None:
    if r.world > 1:
        dist.barrier()


def timeout_seconds() -> float:
    """How long a collective may wait for a peer before it fails (torch's default for a group)."""
    return dist.default_pg_timeout.total_seconds()


def close_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a killed main process: it would keep writing into OUT after the
    lock is gone.  Linux only (prctl PR_SET_PDEATHSIG); elsewhere this does nothing."""
    if not forkserver.die_with_parent():
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _spawned(local: int, fn, args, world: int, port: int, gpus: list[int] | None, parent: int):
    trace.mark("worker_start", trace.process_started_unix())
    _die_with_parent(parent)
    # Only the launcher answers a terminal's Ctrl-C (it stops the workers); a spawned worker has
    # SIGINT blocked from its start (spawn), a forked one from here.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    # Pin the worker to its GPU before CUDA starts: it then sees exactly that one device as cuda:0.
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus[local])
    # The launcher hosts the rendezvous store (as torchrun's agent does): every rank is its client.
    os.environ.update(RANK=str(local), WORLD_SIZE=str(world), LOCAL_RANK="0" if gpus is not None else str(local),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True")
    # tqdm's default lock is a multiprocessing semaphore; a worker stopped by a signal leaves it to
    # the resource tracker, which warns on stderr.  One process's bars need only a thread lock.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    fn(*args)


def spawn(fn, args: tuple, world: int, gpus: list[int] | None) -> None:
    """Run fn(*args) in `world` spawned processes.  As soon as one fails (exception, exit code,
    signal) the others are terminated and WorkerError is raised; nothing waits on a dead peer.
    An exception in this process (an interrupt) stops the workers before it propagates."""
    import torch.multiprocessing as mp

    visible = settings.visible_devices()
    if gpus is not None and visible:
        # Indices in --gpus are relative to what this process may see.
        names = [v.strip() for v in visible.split(",")]
        gpus = [names[i] for i in gpus]
    # Bound here, at port 0, and held until the workers end: a port merely found free could be
    # taken by another run on this node before rank 0 bound it (EADDRINUSE).
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False) if world > 1 else None
    ctx = None
    server = forkserver.pid() if settings.early_workers() else None  # the workers' parent, if forked
    try:
        with _sigint_blocked():
            ctx = mp.start_processes(_spawned, args=(fn, args, world, store.port if store else 0, gpus,
                                                     server or os.getpid()),
                                     nprocs=world, join=False, start_method="forkserver" if server else "spawn")
        while not ctx.join():
            pass
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
        raise _cause(ctx, e) from None
    except BaseException:
        if ctx is not None:
            _stop(ctx.processes)
        raise
    finally:
        for path in ctx.error_files if ctx is not None else ():
            with suppress(OSError):
                os.unlink(path)
        if server:
            forkserver.stop()


@contextmanager
def _sigint_blocked():
    """Workers start with SIGINT blocked, and keep it so: a terminal's Ctrl-C goes to the whole
    process group, and only the main process answers it (it stops the workers).  Here it is
    blocked for the moment of starting them only; one that arrives meanwhile is delivered after."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _stop(procs, grace: float = 10.0) -> None:
    """SIGTERM (and SIGCONT, which a stopped process needs to act on it), then SIGKILL after `grace` s.
    A worker has nothing to flush: its saved ranges are complete files."""
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        with suppress(OSError):
            p.terminate()
            os.kill(p.pid, signal.SIGCONT)
    deadline = time.monotonic() + grace
    for p in alive:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _cause(ctx, first) -> WorkerError:
    """When one worker dies, its peers' collectives fail too, and the parent may notice those
    first.  The cause is a signal (other than the SIGTERM that stopped the rest), else an exit
    code of the worker's own (a reported user error), else the earliest traceback."""
    found = []
    for i, p in enumerate(ctx.processes):
        code, path = p.exitcode, ctx.error_files[i]
        if code in (0, None, -signal.SIGTERM):
            continue
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            found.append(((0, 0), WorkerError(f"worker process {i} was killed by {name}")))
        elif not os.path.exists(path):
            found.append(((1, 0), WorkerError(f"worker process {i} exited with code {code}", code)))
        else:
            with open(path, "rb") as f:
                last = [ln for ln in pickle.load(f).strip().splitlines() if ln.strip()][-1]
            found.append(((2, os.stat(path).st_mtime_ns), WorkerError(f"worker process {i} failed: {last}")))
    if found:
        return min(found, key=lambda f: f[0])[1]
    return WorkerError(f"worker process {first.error_index}: {first}")
