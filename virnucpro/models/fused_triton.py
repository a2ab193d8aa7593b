"""Fused elementwise work as plain Triton kernels: DNABERT-S's (see fused.py) for the attention
path that runs no torch.compile (alibi_triton.py): residual add + LayerNorm, and GEGLU; and
ESM-2's pre-LN residual add with the next LayerNorm, both outputs (VIRNUCPRO_ESM_LAYER=fused).

As in the Inductor kernels they stand in for, each reads its inputs once, computes in fp32 and
rounds once to the input dtype.  Rows are indexed in 64 bits (a million tokens x 6144 features
passes 2^31 elements); the token count is not specialised on, so a new batch size compiles nothing.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


# ROWS rows per program, a [ROWS, BLOCK] tile: about 4k elements each however wide a row is.
TILE = 4096


@triton.jit(do_not_specialize=["T"])
def _add_norm_kernel(X, Y, W, B, S, OUT, T, stride_x, stride_y, stride_s, stride_o, eps,
                     D: tl.constexpr, BLOCK: tl.constexpr, ROWS: tl.constexpr, KEEP_SUM: tl.constexpr):
    """layer_norm(X + Y) into OUT; KEEP_SUM: X + Y also into S, normalised as stored."""
    rows = (tl.program_id(0) * ROWS + tl.arange(0, ROWS)).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = (rows < T)[:, None] & (cols < D)[None, :]
    z = (tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=ok, other=0.0).to(tl.float32)
         + tl.load(Y + rows[:, None] * stride_y + cols[None, :], mask=ok, other=0.0).to(tl.float32))
    if KEEP_SUM:  # the residual stream is stored, and normalised, as an eager add leaves it: rounded once
        s = z.to(S.dtype.element_ty)
        tl.store(S + rows[:, None] * stride_s + cols[None, :], s, mask=ok)
        z = s.to(tl.float32)
    mean = tl.sum(z, axis=1) / D
    centred = tl.where(ok, z - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / D + eps)
    w = tl.load(W + cols, mask=cols < D, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=cols < D, other=0.0).to(tl.float32)
    out = centred * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(OUT + rows[:, None] * stride_o + cols[None, :], out.to(OUT.dtype.element_ty), mask=ok)


@triton.jit(do_not_specialize=["T"])
def _geglu_kernel(H, OUT, T, stride_h, stride_o, F: tl.constexpr, BLOCK: tl.constexpr, ROWS: tl.constexpr):
    rows = (tl.program_id(0) * ROWS + tl.arange(0, ROWS)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = (rows < T)[:, None] & (cols < F)[None, :]
    src = H + rows[:, None] * stride_h + cols[None, :]
    gate = tl.load(src, mask=ok, other=0.0).to(tl.float32)
    value = tl.load(src + F, mask=ok, other=0.0).to(tl.float32)
    # The erf GELU, F.gelu's default.
    gelu = 0.5 * gate * (1.0 + tl.erf(gate * 0.7071067811865476))
    tl.store(OUT + rows[:, None] * stride_o + cols[None, :], (gelu * value).to(OUT.dtype.element_ty), mask=ok)


# Under TRITON_INTERPRET=1 (tests without a GPU) the decorator gave an interpreter object.
INTERPRETED = type(_add_norm_kernel).__name__ == "InterpretedFunction"


def runs_on(device: torch.device) -> bool:
    """Whether these kernels can take tensors of this device."""
    return device.type == "cuda" or INTERPRETED


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _add_norm(x, y, weight, bias, eps, keep_sum: bool):
    x, y = _rows(x), _rows(y)
    T, D = x.shape
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    s = torch.empty_like(out) if keep_sum else out  # without the sum, S is never written
    if T:
        block = triton.next_power_of_2(D)
        rows = max(1, TILE // block)
        _add_norm_kernel[(triton.cdiv(T, rows),)](x, y, weight, bias, s, out, T, x.stride(0), y.stride(0), s.stride(0),
                                                  out.stride(0), eps, D=D, BLOCK=block, ROWS=rows, KEEP_SUM=keep_sum)
    return s, out


def add_norm(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """layer_norm(x + y) over the last dimension of [T, D] tensors."""
    return _add_norm(x, y, weight, bias, eps, keep_sum=False)[1]


def add_and_norm(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + y, layer_norm(x + y)) of [T, D] tensors in one pass: the residual stream and the next
    sublayer's input, where eager PyTorch reads the sum back for the LayerNorm."""
    return _add_norm(x, y, weight, bias, eps, keep_sum=True)


def geglu(h: torch.Tensor) -> torch.Tensor:
    """[T, 2F] -> [T, F]: gelu(first half) x second half."""
    h = _rows(h)
    T, F = h.shape[0], h.shape[1] // 2
    out = h.new_empty(T, F)
    if T:
        block = min(1024, triton.next_power_of_2(F))
        rows = max(1, TILE // block)
        _geglu_kernel[(triton.cdiv(T, rows), triton.cdiv(F, block))](h, out, T, h.stride(0), out.stride(0),
                                                                     F=F, BLOCK=block, ROWS=rows)
    return out
