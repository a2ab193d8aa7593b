"""Elementwise work between a layer's matrix products, fused into one GPU kernel where that
was measured to pay (H200, torch 2.11).

Eager PyTorch runs every elementwise op as its own kernel, each reading and writing the
activations in GPU memory.  The fp32 rotary embedding of ESM-2 is about fifteen kernels over
q and k per layer unfused (docs/PERFORMANCE.md has the figures); DNABERT-S's GEGLU and post-LN
residual LayerNorms gain too.  Plain
LayerNorm, GELU and residual adds do not: PyTorch's kernels were faster than Inductor's.
The copies that put DNABERT-S's heads first for FlexAttention, and back, are one kernel each.

Each function is plain PyTorch that `torch.compile` turns into a kernel, with the token count
symbolic and the feature sizes fixed, which Inductor needs for fast kernels (with every size
symbolic the fused GEGLU ran slower than eager).  A batch above 2^31 elements recompiles once
more (64-bit indexing), so a warm-up must include a full-size batch.

The same functions run eagerly on the CPU, when `VIRNUCPRO_FUSED=0`, or after a compilation
failure (logged once).  Compiled and eager results agree to rounding: inside a fused kernel
intermediates stay in fp32 instead of being rounded to bf16 between ops.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from virnucpro import settings

log = logging.getLogger(__name__)


def enabled() -> bool:
    """VIRNUCPRO_FUSED (settings.models().fused), asked at each call so that a benchmark can
    measure both ways in one process (`settings.override(fused=False)`)."""
    return settings.models().fused


def _rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    def rotate(x: torch.Tensor) -> torch.Tensor:
        # fair-esm's x*cos + rotate_half(x)*sin with cos/sin duplicated over both halves, per half.
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)

    return rotate(q), rotate(k)


def _add_norm(x: torch.Tensor, y: torch.Tensor, weight, bias, eps: float) -> torch.Tensor:
    return F.layer_norm(x + y, x.shape[-1:], weight, bias, eps)


def _geglu(h: torch.Tensor) -> torch.Tensor:
    gate, value = h.chunk(2, dim=-1)
    return F.gelu(gate) * value


def _heads_first(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    return tuple(x.transpose(0, 1).unsqueeze(0).contiguous() for x in (q, k, v))


def _tokens_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(0, 1).contiguous()


class _Fusable:
    """`fn` compiled for CUDA tensors, eager for the rest.  `token_args`: the positions of the
    arguments whose dimension `token_dim` is the batch's token count."""

    def __init__(self, fn, token_args: tuple[int, ...], token_dim: int = 0):
        self.fn, self.token_args, self.token_dim, self.compiled, self.failed = fn, token_args, token_dim, None, False

    @staticmethod
    def wants_compile(x: torch.Tensor) -> bool:
        return x.is_cuda

    def __call__(self, *args):
        if not (enabled() and not self.failed and self.wants_compile(args[0])):
            return self.fn(*args)
        if self.compiled is None:
            self.compiled = torch.compile(self.fn, fullgraph=True)
        for i in self.token_args:
            # The token count is symbolic from the first call, the feature sizes stay fixed: one
            # compilation per process instead of a static one and then a dynamic one.
            torch._dynamo.maybe_mark_dynamic(args[i], self.token_dim)
        try:
            return self.compiled(*args)
        except Exception as e:  # Triton missing or an Inductor bug: slower, not wrong
            self.failed = True
            log.warning("fused %s failed (%s: %s); running it unfused", self.fn.__name__, type(e).__name__, e)
            return self.fn(*args)


_rotary_f = _Fusable(_rotary, token_args=(0, 1, 2, 3))
_add_norm_f = _Fusable(_add_norm, token_args=(0, 1))
_geglu_f = _Fusable(_geglu, token_args=(0,))
_heads_first_f = _Fusable(_heads_first, token_args=(0, 1, 2))
_tokens_first_f = _Fusable(_tokens_first, token_args=(0,), token_dim=1)


def rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """q and k [T, H, Dh] rotated by fp32 angles whose cos and sin are [T, 1, Dh/2]; same dtype
    as q and k.  The tables are made once per step (esm2.PackedBatch), not per head or per layer: sin and
    cos of large angles are costly."""
    return _rotary_f(q, k, cos, sin)


def add_norm(x: torch.Tensor, y: torch.Tensor, norm: nn.LayerNorm, triton: bool = False) -> torch.Tensor:
    """norm(x + y): a post-LN block's output.  triton: fused by a plain Triton kernel instead of
    Inductor (fused_triton.py), for a model that must run no torch.compile."""
    if triton and enabled():
        from virnucpro.models import fused_triton

        return fused_triton.add_norm(x, y, norm.weight, norm.bias, norm.eps)
    return _add_norm_f(x, y, norm.weight, norm.bias, norm.eps)


def geglu(h: torch.Tensor, triton: bool = False) -> torch.Tensor:
    """gelu(first half) x second half, over the last dimension.  triton: as for `add_norm`."""
    if triton and enabled():
        from virnucpro.models import fused_triton

        return fused_triton.geglu(h)
    return _geglu_f(h)


def heads_first(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """q, k, v [T, H, Dh] (strided views of one projection) -> contiguous [1, H, T, Dh] each, as
    FlexAttention wants them, in one kernel each instead of PyTorch's generic strided copies."""
    return _heads_first_f(q, k, v)


def tokens_first(x: torch.Tensor) -> torch.Tensor:
    """[H, T, Dh] -> contiguous [T, H, Dh]: attention's output back in token order."""
    return _tokens_first_f(x)
