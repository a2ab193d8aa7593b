"""Every environment variable virnucpro reads, with its default, in one place.

Nothing else in the package looks at `os.environ`; code asks this module and passes the
answer down.  A value is read when asked (a dictionary lookup), so what a launcher or a
test sets before the call counts; `override` changes a model setting within one process
without touching the environment, and wins over it.  A process or rank value that cannot be
used is a `SettingError`: one line naming the variable, exit code 2; a model setting is
checked where it is used, so a bad setting of one model does not fail a run that never
builds it.  No torch here: the CLI reads settings before torch is imported.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from virnucpro.errors import SettingError

# ---------------------------------------------------------------------------------------
# Process and run: CPU libraries, milestones, fault injection, ranks.
# ---------------------------------------------------------------------------------------

TRACE = "VIRNUCPRO_TRACE"
SPAWN_ONE = "VIRNUCPRO_SPAWN_ONE"
EARLY_WORKERS = "VIRNUCPRO_EARLY_WORKERS"
TEST_FAULT = "VIRNUCPRO_TEST_FAULT"
COMPILE_THREADS = "TORCHINDUCTOR_COMPILE_THREADS"

# A resumed run recomputes ranges and must match an uninterrupted run to the last bit
# (docs/RELIABILITY.md), so CPU results may not depend on the number of threads.  Some of
# MKL's GEMM code paths do, and MKL_DYNAMIC lets it change that number at run time; strict
# CNR mode makes ?gemm bitwise reproducible for any thread count.  MKL reads both at its
# first call, so they are set when the package is imported; a user's own settings win.
# OMP_WAIT_POLICY: OpenMP threads that wait for work sleep instead of spinning; two CPU runs on
# one 2-core host spun against each other (SRR492066, tiny preset: 4.5 s for both against 1.5 s
# alone; 1.8 s with PASSIVE, 2-core dev host, 2026-12-05).  OpenMP reads it when torch loads.
MKL_DEFAULTS = {"MKL_CBWR": "AUTO,STRICT", "MKL_DYNAMIC": "FALSE", "OMP_WAIT_POLICY": "PASSIVE"}


def apply_process_defaults() -> None:
    for name, value in MKL_DEFAULTS.items():
        os.environ.setdefault(name, value)


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, within its cgroup's CPU quota (a container
    or a batch job's allocation) and OMP_NUM_THREADS where set, not every core of the host."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity alone
    asked = os.environ.get("OMP_NUM_THREADS", "")
    if asked.isdigit() and int(asked) > 0:  # a user's or a scheduler's own limit
        cores = min(cores, int(asked))
    return max(1, cores)


def cpu_threads(processes: int = 1) -> int:
    """torch's threads for one of `processes` CPU processes on this node: its share of the usable
    cores, rounded down to a power of two.  Elementwise kernels split their work at thread
    boundaries and compute the elements of a split's tail with other (scalar) code, other last
    bits; with whole row blocks (runner.ROW_BLOCK) a power of two splits at whole vectors, so
    1, 2, 4 ... threads give the same bits and 3 would not (test_reliability)."""
    share = max(1, usable_cores() // max(1, processes))
    return 1 << (share.bit_length() - 1)


def trace_file() -> str | None:
    """VIRNUCPRO_TRACE=FILE: where each process appends its run milestones (None: off)."""
    return os.environ.get(TRACE) or None


def test_fault() -> str | None:
    """VIRNUCPRO_TEST_FAULT: the fault-injection spec of the reliability tests (None: off)."""
    return os.environ.get(TEST_FAULT) or None


def compile_threads_given() -> bool:
    """Whether the user chose Inductor's number of compile threads."""
    return COMPILE_THREADS in os.environ


def default_compile_threads(n: int) -> None:
    """Inductor's compile threads, for this process and its children, where the user chose none:
    Inductor reads the variable when it is first imported, which a run that compiles nothing
    never does (the import costs a second and more)."""
    os.environ.setdefault(COMPILE_THREADS, str(n))


def _whole(name: str, text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise SettingError(f"{name}={text!r}: expected a whole number >= {low} "
                           "(set by torchrun or by --gpus)")
    return value


def _switch(name: str) -> bool:
    """An on/off setting: unset, empty or 0 is off, 1 is on, anything else one line, exit code 2."""
    value = os.environ.get(name, "")
    if value not in ("", "0", "1"):
        raise SettingError(f"{name}={value!r}: expected 0 or 1")
    return value == "1"


def spawn_one() -> bool:
    """VIRNUCPRO_SPAWN_ONE=1: one GPU (or the CPU without --cpu-workers) runs in a spawned worker,
    as each of N ranks does, instead of in this process: what spawning costs a run, measured
    against the in-process run (the scaling prediction, virnucpro/replay.py)."""
    return _switch(SPAWN_ONE)


def early_workers() -> bool:
    """VIRNUCPRO_EARLY_WORKERS=1: a run of several processes forks its workers from a server that
    imports torch while the launcher does (virnucpro/forkserver.py), instead of spawning
    interpreters that import it after; off by default until N GPUs have measured it."""
    return _switch(EARLY_WORKERS)


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


# ============================================================================= models

FLEX_BLOCK_ENV = "VIRNUCPRO_FLEX_BLOCK"
DNA_ATTENTION_ENV = "VIRNUCPRO_DNA_ATTENTION"
FUSED_ENV = "VIRNUCPRO_FUSED"
ESM_ROTARY_ENV = "VIRNUCPRO_ESM_ROTARY"
ESM_LAYER_ENV = "VIRNUCPRO_ESM_LAYER"
ESM_LAYER_CHOICES = ("eager", "fused")
DNA_ATTENTION_CHOICES = ("flex", "triton", "auto")
ESM_ROTARY_CHOICES = ("auto", "inductor", "triton")


@dataclass(frozen=True)
class Models:
    """flex_block: FlexAttention's sparsity granule and tiles for DNABERT-S (ORFs are about 100
    tokens, so 64 wastes less of each block than flex's own 128).  fused: the elementwise
    fusions of fused.py.  dna_attention / esm_rotary / esm_layer: the raw kernel choices, checked
    by `dna_attention()`, `esm_rotary()` and `esm_layer()`."""
    flex_block: int = 64
    fused: bool = True
    dna_attention: str = "auto"
    esm_rotary: str = "auto"
    esm_layer: str = "eager"


_overrides: dict = {}


def models(env=None) -> Models:
    """The model settings now: `override`s first, then the environment, then the defaults."""
    env = os.environ if env is None else env
    values = Models(
        flex_block=int(env.get(FLEX_BLOCK_ENV, "64")),
        fused=env.get(FUSED_ENV, "1") != "0",
        dna_attention=env.get(DNA_ATTENTION_ENV, "").strip().lower() or "auto",
        esm_rotary=env.get(ESM_ROTARY_ENV, "").strip().lower() or "auto",
        esm_layer=env.get(ESM_LAYER_ENV, "").strip().lower() or "eager",
    )
    return dataclasses.replace(values, **_overrides) if _overrides else values


@contextlib.contextmanager
def override(**changes):
    """Model settings changed for the duration of a `with` block (benchmarks measuring variants)."""
    unknown = set(changes) - {f.name for f in dataclasses.fields(Models)}
    if unknown:
        raise TypeError(f"unknown model settings: {', '.join(sorted(unknown))}")
    saved = dict(_overrides)
    _overrides.update(changes)
    try:
        yield models()
    finally:
        _overrides.clear()
        _overrides.update(saved)


def dna_attention() -> str:
    """DNABERT-S's attention: "auto", "flex" or "triton" (alibi.dna_backend says what each means)."""
    from virnucpro.errors import InputError

    value = models().dna_attention
    if value not in DNA_ATTENTION_CHOICES:
        raise InputError(f"{DNA_ATTENTION_ENV}={value!r}: expected one of {', '.join(DNA_ATTENTION_CHOICES)}")
    return value


def esm_rotary() -> str:
    """ESM-2's rotary on a GPU: "auto", "inductor" or "triton" (esm2.rotary_kernel resolves "auto")."""
    value = models().esm_rotary
    if value not in ESM_ROTARY_CHOICES:
        raise ValueError(f"{ESM_ROTARY_ENV}={value!r}: expected auto, inductor or triton")
    return value


def esm_layer() -> str:
    """ESM-2's layer between its matrix products: "eager" (default: PyTorch's kernels) or "fused"
    (esm2.ESM2._hidden_fused: residual add + LayerNorm in one kernel, GELU in fc1's GEMM; landed
    for the GPU A/B that decides it, docs/PERFORMANCE.md)."""
    value = models().esm_layer
    if value not in ESM_LAYER_CHOICES:
        raise ValueError(f"{ESM_LAYER_ENV}={value!r}: expected eager or fused")
    return value


def hf_cache_roots(env=None) -> list[Path]:
    """Hugging Face hub cache folders in the order huggingface_hub itself consults its variables."""
    env = os.environ if env is None else env
    roots = [env.get("HF_HUB_CACHE"), env.get("HUGGINGFACE_HUB_CACHE")]
    if env.get("HF_HOME"):
        roots.append(os.path.join(env["HF_HOME"], "hub"))
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    roots.append(os.path.join(xdg, "huggingface", "hub"))
    return list(dict.fromkeys(Path(r).expanduser() for r in roots if r))
