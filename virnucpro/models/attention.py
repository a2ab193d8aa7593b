"""Bidirectional attention over packed sequences: q, k, v are [T, H, Dh] for B sequences laid
end to end, `cu_seqlens` [B+1] marks where each starts.  A token attends only to its own sequence.

On a GPU in bf16/fp16 this is torch's varlen FlashAttention, which needs no padding at all.
On the CPU each sequence is attended on its own (`per_sequence`): a protein's embedding must
depend on its own sequence only, whatever the batch (docs/RELIABILITY.md), and every batched
kernel tried moved a sequence's last bits with the batch around it on some CPU (SDPA padded to the
longest; SDPA over the sequences of one length, whose math path folds the batch by its strides and
whose fused kernel split its work by thread).  On a GPU in fp32 (the reference engine, the
original's recipe) the batch is padded to its longest sequence as the original did: one launch
instead of one per length keeps the reference's speed what it was.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_FLASH_DTYPES = (torch.float16, torch.bfloat16)


def _flash_varlen(q, k, v, cu, max_seqlen):
    """The kernel behind torch.nn.attention.varlen's varlen_attn (its FlashAttention path),
    called as the aten op: importing that module imports Dynamo, sympy and torch.fx, which cost
    a run that compiles nothing a second on a 2-core host before its first protein.
    Positional arguments only: the keyword-only options differ between torch releases."""
    return torch.ops.aten._flash_attention_forward(q, k, v, cu, cu, max_seqlen, max_seqlen, 0.0, False, False)[0]


def token_index(cu_seqlens: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequence of each token, position of each token inside its sequence), both int64 [T]."""
    cu = cu_seqlens.long()
    lengths = cu[1:] - cu[:-1]
    # output_size spares the GPU a device-to-host sync to learn T.
    seq = torch.repeat_interleave(torch.arange(lengths.numel(), device=cu.device), lengths, output_size=total)
    pos = torch.arange(total, device=cu.device) - cu[seq]
    return seq, pos


def uses_varlen(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `packed_attention` takes the unpadded FlashAttention path for tensors like these."""
    if torch.device(device).type != "cuda" or dtype not in _FLASH_DTYPES:
        return False
    return hasattr(torch.ops.aten, "_flash_attention_forward")


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens: torch.Tensor, max_seqlen: int, groups=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) v within each sequence; returns [T, H, Dh].  `groups`: the
    batch's `length_groups`, or a function that returns them (the caller keeps them for all
    layers, and the varlen kernel never needs them)."""
    if uses_varlen(q.device, q.dtype):
        return _flash_varlen(q, k, v, cu_seqlens.to(device=q.device, dtype=torch.int32), max_seqlen)
    return padded_attention(q, k, v, cu_seqlens, max_seqlen, groups)


def length_groups(cu_seqlens: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(L, token positions [B_L, L]) of the sequences of each length L in a packed batch."""
    cu = cu_seqlens.long()
    lengths = cu.diff()
    starts = cu[:-1]
    return [(n, starts[lengths == n][:, None] + torch.arange(n, device=cu.device))
            for n in torch.unique(lengths).tolist() if n > 0]


def per_sequence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups, bias=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh) + bias(L)) v, one sequence at a time, for the CPU.  Each product is
    [H, L, Dh] x [H, Dh, L] on copies laid out alike (row-major, 64-byte aligned where H * Dh is a
    multiple of 16), so its shape, strides and with them its kernel follow from L alone, never from
    how many sequences share the step or the thread that takes them.  `groups`: length_groups' list,
    or a function that returns it (called here, so a compiled caller never traces the loop);
    `bias`: L -> [H, L, L] added to the scores (ALiBi), or None."""
    groups = groups() if callable(groups) else groups
    out = torch.empty_like(q)
    scale = q.shape[-1] ** -0.5
    for n, idx in groups:
        qs = q[idx].mul_(scale).transpose(1, 2).contiguous()  # [B_L, H, L, Dh]: x[idx] is a copy
        kts = k[idx].permute(0, 2, 3, 1).contiguous()  # [B_L, H, Dh, L]
        vs, os = v[idx].transpose(1, 2).contiguous(), torch.empty_like(qs)
        b = bias(n) if bias is not None else None
        for qi, kti, vi, oi in zip(qs, kts, vs, os):
            scores = torch.bmm(qi, kti) if b is None else torch.baddbmm(b, qi, kti)
            torch.bmm(scores.softmax(-1), vi, out=oi)
        out[idx] = os.transpose(1, 2)
    return out


def by_length(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups, attend) -> torch.Tensor:
    """`attend(q, k, v, L)` on [B_L, H, L, Dh] for each length group, one launch per length: the
    GPU's fp32 path (the CPU's is `per_sequence`).  `groups`: as for per_sequence."""
    groups = groups() if callable(groups) else groups
    out = torch.empty_like(q)
    for n, idx in groups:
        qg, kg, vg = (x[idx].transpose(1, 2) for x in (q, k, v))
        out[idx] = attend(qg, kg, vg, n).transpose(1, 2)
    return out


def padded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens: torch.Tensor, max_seqlen: int, groups=None) -> torch.Tensor:
    """Off the varlen kernel: one sequence at a time on the CPU, padded to the longest on a GPU (fp32)."""
    if not q.is_cuda:
        return per_sequence(q, k, v, (lambda: length_groups(cu_seqlens)) if groups is None else groups)
    total, heads, head_dim = q.shape
    batch = cu_seqlens.numel() - 1
    seq, pos = token_index(cu_seqlens, total)

    def pad(x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(batch, max_seqlen, heads, head_dim)
        out[seq, pos] = x
        return out.transpose(1, 2)

    # Only keys are masked: padded query rows compute garbage that is never read back,
    # and every real query row keeps at least one real key, so no row is all -inf.
    real_key = torch.zeros(batch, max_seqlen, dtype=torch.bool, device=q.device)
    real_key[seq, pos] = True
    out = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=real_key[:, None, None, :])
    return out.transpose(1, 2)[seq, pos]
