"""Knobs that come from the environment, read here and nowhere else.

Each section reads its variables when asked, so that a test or a probe that sets a variable sees
it; `override` changes a value within one process without touching the environment, and wins
over it.  Validation happens where a value is used, so that a bad setting of one model does not
fail a run that never builds that model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

# ============================================================================= models

FLEX_BLOCK_ENV = "VIRNUCPRO_FLEX_BLOCK"
DNA_ATTENTION_ENV = "VIRNUCPRO_DNA_ATTENTION"
FUSED_ENV = "VIRNUCPRO_FUSED"
ESM_ROTARY_ENV = "VIRNUCPRO_ESM_ROTARY"
DNA_ATTENTION_CHOICES = ("flex", "triton", "auto")
ESM_ROTARY_CHOICES = ("auto", "inductor", "triton")


@dataclass(frozen=True)
class Models:
    """flex_block: FlexAttention's sparsity granule and tiles for DNABERT-S (ORFs are about 100
    tokens, so 64 wastes less of each block than flex's own 128).  fused: the elementwise
    fusions of fused.py.  dna_attention / esm_rotary: the raw kernel choices, checked by
    `dna_attention()` and `esm_rotary()`."""
    flex_block: int = 64
    fused: bool = True
    dna_attention: str = "auto"
    esm_rotary: str = "auto"


_overrides: dict = {}


def models(env=None) -> Models:
    """The model settings now: `override`s first, then the environment, then the defaults."""
    env = os.environ if env is None else env
    values = Models(
        flex_block=int(env.get(FLEX_BLOCK_ENV, "64")),
        fused=env.get(FUSED_ENV, "1") != "0",
        dna_attention=env.get(DNA_ATTENTION_ENV, "").strip().lower() or "auto",
        esm_rotary=env.get(ESM_ROTARY_ENV, "").strip().lower() or "auto",
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


def hf_cache_roots(env=None) -> list[Path]:
    """Hugging Face hub cache folders in the order huggingface_hub itself consults its variables."""
    env = os.environ if env is None else env
    roots = [env.get("HF_HUB_CACHE"), env.get("HUGGINGFACE_HUB_CACHE")]
    if env.get("HF_HOME"):
        roots.append(os.path.join(env["HF_HOME"], "hub"))
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    roots.append(os.path.join(xdg, "huggingface", "hub"))
    return list(dict.fromkeys(Path(r).expanduser() for r in roots if r))
