"""Bidirectional attention over packed sequences: q, k, v are [T, H, Dh] for B sequences laid
end to end, `cu_seqlens` [B+1] marks where each starts.  A token attends only to its own sequence.

On a GPU in bf16/fp16 this is torch's varlen FlashAttention, which needs no padding at all.
Anywhere else (CPU, fp32) the sequences are padded to the longest one for
`scaled_dot_product_attention`; the runner batches sequences of similar length, so little
compute goes to padding.
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
                     cu_seqlens: torch.Tensor, max_seqlen: int, index=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) v within each sequence; returns [T, H, Dh].  `index`: the
    batch's `token_index`, where the caller has it already (the padded path needs it)."""
    if uses_varlen(q.device, q.dtype):
        return _flash_varlen(q, k, v, cu_seqlens.to(device=q.device, dtype=torch.int32), max_seqlen)
    return padded_attention(q, k, v, cu_seqlens, max_seqlen, index)


def padded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens: torch.Tensor, max_seqlen: int, index=None) -> torch.Tensor:
    total, heads, head_dim = q.shape
    batch = cu_seqlens.numel() - 1
    seq, pos = token_index(cu_seqlens, total) if index is None else index

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
