"""Where a sequence's bits moved between two layouts: the first module whose input or output rows
for that sequence differ, found by running both forward steps with hooks on every leaf module.
The input of the projection after attention (DNABERT-S `attn_out`, ESM-2 `out_proj`) is the
attention's own output, so a moved attention shows as that input."""
from __future__ import annotations

import numpy as np
import torch

from virnucpro.runner import filled, pack, token_budget_batches


def step_holding(token_lists, budget: int, i: int) -> tuple[list, int]:
    """The forward step that embeds sequence i at this token budget, and i's place in it."""
    for idx in token_budget_batches([len(t) for t in token_lists], budget):
        where = np.flatnonzero(idx == i)
        if where.size:
            return [token_lists[j] for j in idx], int(where[0])
    raise IndexError(i)


def _rows(model, batch: list, place: int) -> list:
    """(module name, input rows, output rows) of sequence `place` of `batch`, in the order run."""
    seen = []

    def hook(module, args, out, name=""):
        seen.append((name, args[0] if args and torch.is_tensor(args[0]) else None, out))

    hooks = [m.register_forward_hook(lambda m, a, o, n=name: hook(m, a, o, n))
             for name, m in model.named_modules() if not list(m.children())]
    try:
        tokens, cu, max_len = pack(filled(batch))
        with torch.inference_mode():
            model.embed_packed(tokens, cu, max_len)
    finally:
        for h in hooks:
            h.remove()
    total, a, b = int(cu[-1]), int(cu[place]), int(cu[place + 1])

    def rows(x):
        return x[a:b] if torch.is_tensor(x) and x.dim() and x.shape[0] == total else None

    return [(name, rows(i), rows(o)) for name, i, o in seen]


def first_moved(model, token_lists, i: int, budget_a: int, budget_b: int) -> str:
    """'input of layers.0.attn_out' (or 'output of ...'): the first place where sequence i's
    activations differ between its steps at the two budgets; 'the pooling' when none does."""
    a = _rows(model, *step_holding(token_lists, budget_a, i))
    b = _rows(model, *step_holding(token_lists, budget_b, i))
    for (name, in_a, out_a), (_, in_b, out_b) in zip(a, b):
        for what, x, y in (("input", in_a, in_b), ("output", out_a, out_b)):
            if x is not None and y is not None and not torch.equal(x, y):
                return f"{what} of {name} (max |diff| {(x.double() - y.double()).abs().max():.3g})"
    return "the pooling (every module's rows agree)"
