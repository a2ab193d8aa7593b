"""Every environment variable virnucpro reads, with its default, in one place.

Nothing else in the package looks at `os.environ`; code asks this module and passes the
answer down.  A value is read when asked (a dictionary lookup), so what a launcher or a
test sets before the call counts.  A value that cannot be used is a `SettingError`: one
line naming the variable, exit code 2.  No torch here: the CLI reads settings before
torch is imported.
"""
from __future__ import annotations

import os

from virnucpro.errors import SettingError

# ---------------------------------------------------------------------------------------
# Process and run: CPU libraries, milestones, fault injection, ranks.
# ---------------------------------------------------------------------------------------

TRACE = "VIRNUCPRO_TRACE"
TEST_FAULT = "VIRNUCPRO_TEST_FAULT"
COMPILE_THREADS = "TORCHINDUCTOR_COMPILE_THREADS"

# A resumed run recomputes ranges and must match an uninterrupted run to the last bit
# (docs/RELIABILITY.md), so CPU results may not depend on the number of threads.  Some of
# MKL's GEMM code paths do, and MKL_DYNAMIC lets it change that number at run time; strict
# CNR mode makes ?gemm bitwise reproducible for any thread count.  MKL reads both at its
# first call, so they are set when the package is imported; a user's own settings win.
MKL_DEFAULTS = {"MKL_CBWR": "AUTO,STRICT", "MKL_DYNAMIC": "FALSE"}


def apply_process_defaults() -> None:
    for name, value in MKL_DEFAULTS.items():
        os.environ.setdefault(name, value)


def trace_file() -> str | None:
    """VIRNUCPRO_TRACE=FILE: where each process appends its run milestones (None: off)."""
    return os.environ.get(TRACE) or None


def test_fault() -> str | None:
    """VIRNUCPRO_TEST_FAULT: the fault-injection spec of the reliability tests (None: off)."""
    return os.environ.get(TEST_FAULT) or None


def compile_threads_given() -> bool:
    """Whether the user chose Inductor's number of compile threads."""
    return COMPILE_THREADS in os.environ


def _whole(name: str, text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise SettingError(f"{name}={text!r}: expected a whole number >= {low} "
                           "(set by torchrun or by --gpus)")
    return value


def rank_env() -> tuple[int, int, int] | None:
    """(RANK, WORLD_SIZE, LOCAL_RANK) when the process was started by torchrun or by our own
    spawn, else None."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return None
    r, w = _whole("RANK", rank, 0), _whole("WORLD_SIZE", world, 1)
    if r >= w:
        raise SettingError(f"RANK={rank!r} is not below WORLD_SIZE={world!r}")
    return r, w, _whole("LOCAL_RANK", os.environ.get("LOCAL_RANK", "0"), 0)


def rank_name() -> str:
    """This process's RANK as set ("0" when unset), for messages and fault specs."""
    return os.environ.get("RANK", "0")


def visible_devices() -> str | None:
    """CUDA_VISIBLE_DEVICES as set (None: unset, every GPU is visible)."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")
