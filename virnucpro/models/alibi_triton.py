"""Packed (varlen) ALiBi attention as one Triton kernel: DNABERT-S attention with no torch.compile.

FlexAttention is traced by Dynamo and compiled by Inductor in every process (seconds) and again
when batch sizes change.  This kernel is compiled by Triton alone, once per GPU kind, and then
loaded from Triton's cache on disk in milliseconds.

Layout: q, k, v [T, H, Dh] exactly as DNABERT-S's projection gives them (strided views of one
[T, 3, H, Dh] tensor; only the last dimension must be contiguous); out [T, H, Dh] contiguous, so
that the output projection reads it as [T, H * Dh] without a copy.  Sequences are delimited by
`cu_seqlens`; every token attends to all tokens of its sequence with the score bias
-slope_h * |i - j| after the 1/sqrt(Dh) scaling, as in `alibi.py`.

One program takes BLOCK_M consecutive query rows of the packed batch and one head.  Its keys are
those from the start of its first row's sequence to the end of its last row's sequence, visited
BLOCK_N at a time with an online softmax (FlashAttention-2 style, fp32 statistics and
accumulator); pairs of different sequences are masked by a per-token sequence index.  DNABERT-S
sequences (ORFs) are about 100 tokens, so a program sees a few key blocks and nothing is padded.

`TRITON_INTERPRET=1`, set before this module is imported, runs the same kernels on the CPU
(slowly: tests only).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

# Tiles: scripts/triton_probe.py (retired, docs/PERFORMANCE.md) timed other choices on the GPU.
BLOCK_M, BLOCK_N, NUM_WARPS, NUM_STAGES = 64, 64, 4, 2

LOG2E = 1.4426950408889634
_LOG2E = tl.constexpr(LOG2E)  # a kernel reads globals only as constexpr


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    # UPCAST serves the interpreter only: Triton 3.9's multiplies bf16 operands as raw 16-bit
    # integers.  bf16 x bf16 products are exact in fp32, so fp32 operands give the same sums.
    if UPCAST:
        c = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        c = tl.dot(a, b, input_precision=PRECISION)
    return c


# T changes with every batch: unspecialised, so that a new batch size compiles nothing.
@triton.jit(do_not_specialize=["T"])
def _alibi_attention_kernel(
    Q, K, V, O, SEQ, CU, SLOPES, T,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    block = tl.program_id(0)
    h = tl.program_id(1)
    first_row = block * BLOCK_M
    rows = first_row + tl.arange(0, BLOCK_M)
    row_ok = rows < T
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM

    q_seq = tl.load(SEQ + rows, mask=row_ok, other=-1)
    lo = tl.load(CU + tl.load(SEQ + first_row))
    hi = tl.load(CU + tl.load(SEQ + tl.minimum(first_row + BLOCK_M, T) - 1) + 1)

    # 64-bit offsets: T x 3 x H x Dh passes 2^31 at about a million tokens.
    rows64 = rows.to(tl.int64)
    q = tl.load(Q + rows64[:, None] * stride_qt + h * stride_qh + d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    # Scores are kept in log2 units so that exp2 serves the softmax.
    slope = tl.load(SLOPES + h).to(tl.float32) * _LOG2E

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start in range(lo, hi, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        col_ok = cols < hi
        cols64 = cols.to(tl.int64)
        kv_mask = col_ok[:, None] & d_ok[None, :]
        k = tl.load(K + cols64[:, None] * stride_kt + h * stride_kh + d[None, :], mask=kv_mask, other=0.0)
        k_seq = tl.load(SEQ + cols, mask=col_ok, other=-2)

        s = _dot(q, tl.trans(k), PRECISION, UPCAST) * qk_scale
        # Within one sequence the packed distance is the distance inside the sequence.
        s = s - slope * tl.abs(rows[:, None] - cols[None, :]).to(tl.float32)
        s = tl.where(q_seq[:, None] == k_seq[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        # A row whose sequence has no key in this block yet keeps -inf: exponentiate against 0.
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_ref[:, None])
        alpha = tl.exp2(m_i - m_ref)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(V + cols64[:, None] * stride_vt + h * stride_vh + d[None, :], mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, PRECISION, UPCAST)
        m_i = m_new

    # Every real row sees at least itself; l is 0 only on rows past T, which are not stored.
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tl.store(O + rows64[:, None] * stride_ot + h * stride_oh + d[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None] & d_ok[None, :])


# Under TRITON_INTERPRET=1 the decorator gave an interpreter object instead of a GPU kernel.
INTERPRETED = type(_alibi_attention_kernel).__name__ == "InterpretedFunction"


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 follows torch's matmul setting: exact products unless TF32 was allowed.
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def runs_on(device: torch.device) -> bool:
    """Whether these kernels can take tensors of this device."""
    return device.type == "cuda" or INTERPRETED


def sequence_index(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """[T] int32: which sequence each packed token belongs to."""
    lengths = cu_seqlens.long().diff()
    ids = torch.arange(lengths.numel(), device=cu_seqlens.device, dtype=torch.int32)
    return torch.repeat_interleave(ids, lengths, output_size=total)


def packed_alibi_attention(q, k, v, cu_seqlens, slopes, seq_index=None, *, block_m=None, block_n=None,
                           num_warps=None, num_stages=None) -> torch.Tensor:
    """q, k, v [T, H, Dh] (bf16, fp16 or fp32; any strides but a contiguous last dimension) ->
    contiguous [T, H, Dh].  cu_seqlens [B + 1] and `seq_index` [T] (from `sequence_index`; made
    here if not given) are int32 on q's device; slopes [H] fp32."""
    T, H, Dh = q.shape
    out = torch.empty((T, H, Dh), dtype=q.dtype, device=q.device)
    if T == 0:
        return out
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    cu = cu_seqlens.to(torch.int32)
    seq = sequence_index(cu, T) if seq_index is None else seq_index.to(torch.int32)
    bm, bn = block_m or BLOCK_M, block_n or BLOCK_N
    _alibi_attention_kernel[(triton.cdiv(T, bm), H)](
        q, k, v, out, seq, cu, slopes.to(torch.float32), T,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        LOG2E / math.sqrt(Dh),
        HEAD_DIM=Dh, BLOCK_D=max(16, triton.next_power_of_2(Dh)), BLOCK_M=bm, BLOCK_N=bn,
        PRECISION=_dot_precision(q.dtype), UPCAST=INTERPRETED and q.dtype == torch.bfloat16, num_warps=num_warps or NUM_WARPS, num_stages=num_stages or NUM_STAGES,
    )
    return out
