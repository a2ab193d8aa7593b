"""Token-budget batching of variable-length items.  Knows nothing about biology.

Items are sorted by length so that a batch holds items of similar length (padded
fallback paths waste little), then cut greedily so that the tokens of a batch stay
within the budget.  Results come back in the caller's order.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


def token_budget_batches(lengths: Sequence[int], budget: int, max_items: int | None = None) -> list[np.ndarray]:
    """Index arrays, longest items first; an item longer than the budget gets a batch of its own."""
    if budget < 1:
        raise ValueError(f"token budget must be positive, got {budget}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches, start, used = [], 0, 0
    for pos, idx in enumerate(order):
        n = int(lengths[idx])
        full = used + n > budget or (max_items is not None and pos - start >= max_items)
        if pos > start and full:
            batches.append(order[start:pos])
            start, used = pos, 0
        used += n
    if start < len(order):
        batches.append(order[start:])
    return batches


def pack(token_lists: Sequence[Sequence[int]], device: torch.device | str = "cpu", pin: bool = False):
    """Concatenate token lists: (tokens[T], cu_seqlens[B+1] int32, max_seqlen)."""
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    flat = np.fromiter((x for t in token_lists for x in t), dtype=np.int64, count=int(lengths.sum()))
    cu = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu[1:])
    tokens, cu_seqlens = torch.from_numpy(flat), torch.from_numpy(cu)
    if pin:
        tokens, cu_seqlens = tokens.pin_memory(), cu_seqlens.pin_memory()
    device = torch.device(device)
    non_blocking = pin and device.type == "cuda"
    return (
        tokens.to(device, non_blocking=non_blocking),
        cu_seqlens.to(device, non_blocking=non_blocking),
        int(lengths.max()) if len(lengths) else 0,
    )


def run_batched(
    token_lists: Sequence[Sequence[int]],
    budget: int,
    fn: Callable[[list[Sequence[int]]], torch.Tensor],
    dim: int,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Apply `fn` (a batch of token lists -> [B, dim]) over all items; rows in input order, on the CPU.

    Results stay on fn's device until the end: one copy back instead of a device
    synchronisation per batch, so the host queues the next batch while the GPU works."""
    order, pieces = [], []
    for idx in token_budget_batches([len(t) for t in token_lists], budget):
        pieces.append(fn([token_lists[i] for i in idx]).float())
        order.append(idx)
        if on_batch is not None:
            on_batch(len(idx))
    out = torch.empty(len(token_lists), dim, dtype=torch.float32)
    if pieces:
        out[torch.from_numpy(np.concatenate(order))] = torch.cat(pieces).cpu()
    return out

