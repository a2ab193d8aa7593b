"""ESM-2's rotary embedding as a plain Triton kernel, so that ESM-2 on a GPU, like DNABERT-S with
VIRNUCPRO_DNA_ATTENTION=triton, runs without torch.compile and a process pays no Dynamo tracing.

Same arithmetic as fused.rotary: fp32 products of each half with the step's cos and sin tables,
one rounding to the input dtype; q and k are rotated in place (they are fresh projection
outputs), reading each element once.  Rows are indexed in 64 bits and the token count is not
specialised on, so no batch size compiles anything new.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rotate(X, t, stride_t, stride_h, heads, cols, ok, cos, sin, HALF: tl.constexpr):
    first = X + t * stride_t + heads[:, None] * stride_h + cols[None, :]
    x1 = tl.load(first, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(first + HALF, mask=ok, other=0.0).to(tl.float32)
    tl.store(first, (x1 * cos - x2 * sin).to(X.dtype.element_ty), mask=ok)
    tl.store(first + HALF, (x2 * cos + x1 * sin).to(X.dtype.element_ty), mask=ok)


@triton.jit(do_not_specialize=["T"])
def _rotary_kernel(Q, K, COS, SIN, T, stride_qt, stride_qh, stride_kt, stride_kh, stride_ct,
                   H: tl.constexpr, HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    heads = tl.arange(0, BLOCK_H)
    cols = tl.arange(0, BLOCK_D)
    ok = (heads < H)[:, None] & (cols < HALF)[None, :]
    cos = tl.load(COS + t * stride_ct + cols, mask=cols < HALF, other=0.0)[None, :]
    sin = tl.load(SIN + t * stride_ct + cols, mask=cols < HALF, other=0.0)[None, :]
    _rotate(Q, t, stride_qt, stride_qh, heads, cols, ok, cos, sin, HALF)
    _rotate(K, t, stride_kt, stride_kh, heads, cols, ok, cos, sin, HALF)


def rotary_(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate q and k [T, H, Dh] in place by fp32 tables cos, sin [T, 1, Dh/2] (or [T, Dh/2]);
    returns them."""
    T, H, D = q.shape
    if q.stride(-1) != 1 or k.stride(-1) != 1:
        raise ValueError("rotary_: the last dimension of q and k must be contiguous")
    cos, sin = cos.reshape(T, D // 2).contiguous(), sin.reshape(T, D // 2).contiguous()
    if T:
        _rotary_kernel[(T,)](q, k, cos, sin, T, q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos.stride(0),
                             H=H, HALF=D // 2, BLOCK_H=triton.next_power_of_2(H),
                             BLOCK_D=triton.next_power_of_2(D // 2))
    return q, k
