"""Per-sequence sums over a packed batch, added in a fixed order.

`index_add_` gives the same sums, but on a GPU it adds with atomics in no fixed order: the
same batch could pool to other last bits from one run to the next, and a resumed run would
not reproduce an uninterrupted one (docs/RELIABILITY.md).  `segment_reduce` adds each
sequence's rows in token order (on a GPU, one thread per sequence and feature); on the CPU
its bits are exactly index_add_'s.
"""
from __future__ import annotations

import torch


def segment_sums(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x [T, D]: B sequences end to end, `lengths` [B] on x's device -> [B, D] sums."""
    if x.shape[0] == 0:
        return x.new_zeros(lengths.numel(), *x.shape[1:])
    # unsafe: without it, checking the lengths copies them to the host and waits for the GPU.
    return torch.segment_reduce(x, "sum", lengths=lengths, unsafe=True)
