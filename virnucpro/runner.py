"""Token-budget batching of variable-length items.  Knows nothing about biology.

Items are sorted by length so that a batch holds items of similar length, then cut greedily
so that the tokens of a batch stay within the budget.  Results come back in the caller's order.

A row's results must not depend on the batch it landed in (docs/RELIABILITY.md), and a GEMM's
kernel, with it the order of a row's sums, follows the row count: on one H100 some of the
models' projections gave other bits for 17, 64, 200 or 1000 rows and fewer, on the CPU for up to
100.  So every forward step and every classifier call computes a whole number of ROW_BLOCK rows,
filled up with rows nobody reads: on the CPU every multiple of 1024 rows gave every row the same
bits (on a GPU not yet measured beyond those thresholds).
"""
from __future__ import annotations

from itertools import chain
from typing import Callable, Sequence

import numpy as np
import torch


ROW_BLOCK = 1024


def row_count(n: int) -> int:
    """Rows computed for n real ones: a whole number of ROW_BLOCKs, at least one."""
    return max(1, -(-n // ROW_BLOCK)) * ROW_BLOCK


def filled(token_lists: Sequence[Sequence[int]], filler: int = 0) -> list:
    """`token_lists` and filler sequences after them, to row_count(tokens) tokens in all.  No filler
    is longer than the longest given, so the batch's longest length stays what it was."""
    total = sum(map(len, token_lists))
    longest = max(map(len, token_lists), default=1) or 1
    whole, rest = divmod(row_count(total) - total, longest)
    return [*token_lists, *([[filler] * longest] * whole), *([[filler] * rest] if rest else [])]


def in_row_blocks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn(x) for a row-wise fn, computed on x filled with zero rows to row_count(rows)."""
    n = x.shape[0]
    return fn(torch.cat([x, x.new_zeros(row_count(n) - n, *x.shape[1:])]))[:n]


def token_budget_batches(lengths: Sequence[int], budget: int, first_budget: int | None = None) -> list[np.ndarray]:
    """Index arrays, longest items first; an item longer than the budget gets a batch of its own.
    `first_budget`, if given, is the budget of the first batch only."""
    if budget < 1 or (first_budget is not None and first_budget < 1):
        raise ValueError(f"token budget must be positive, got {budget} (first batch: {first_budget})")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches, start, used = [], 0, 0
    for pos, idx in enumerate(order):
        n = int(lengths[idx])
        limit = first_budget if first_budget is not None and not batches else budget
        if pos > start and used + n > limit:
            batches.append(order[start:pos])
            start, used = pos, 0
        used += n
    if start < len(order):
        batches.append(order[start:])
    return batches


def pack(token_lists: Sequence[Sequence[int]], device: torch.device | str = "cpu", pin: bool = False):
    """Concatenate token lists: (tokens[T], cu_seqlens[B+1] int32, max_seqlen)."""
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    # chain runs in C: a million tokens in about a third of a generator expression's time.
    flat = np.fromiter(chain.from_iterable(token_lists), dtype=np.int64, count=int(lengths.sum()))
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
    first_budget: int | None = None,
) -> torch.Tensor:
    """Apply `fn` (a batch of token lists -> [B, dim]) over all items; rows in input order, on the CPU.

    Results stay on fn's device until the end: one copy back instead of a device
    synchronisation per batch, so the host queues the next batch while the GPU works.
    The host packs a batch while the device runs the one before, except for the first: a
    smaller `first_budget` gets the device started sooner (on the CPU it would only change
    the batches, and with them the last bits of the results).  The rows are
    put back in input order on fn's device, in one scatter: on a 2-core host, scattering 50k
    DNABERT-S rows took 50 ms, inside the stage's time."""
    order, pieces = [], []
    for idx in token_budget_batches([len(t) for t in token_lists], budget, first_budget=first_budget):
        pieces.append(fn([token_lists[i] for i in idx]).float())
        order.append(idx)
        if on_batch is not None:
            on_batch(len(idx))
    if not pieces:
        return torch.empty(len(token_lists), dim, dtype=torch.float32)
    rows = torch.cat(pieces)
    out = torch.empty_like(rows)
    out[torch.from_numpy(np.concatenate(order)).to(rows.device)] = rows
    return out.cpu()

