"""Seeded random weights for runs without trained ones, drawn on the model's own device."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


@torch.no_grad()
def random_init_(model: nn.Module, seed: int, std: Callable[[nn.Module], float]) -> nn.Module:
    """Linear and Embedding weights from N(0, std(module)^2) with one generator, in module
    order; biases zero, LayerNorms the identity, an Embedding's padding row zero."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            m.weight.normal_(0.0, std(m), generator=gen)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()
    return model


def embedding(num: int, dim: int, padding_idx: int | None = None, device=None, dtype=None) -> nn.Embedding:
    """nn.Embedding, without its N(0, 1) draw on the meta device, where the loaders build models
    and fill them later: torch draws on meta through its Python references, and their first
    use imports Dynamo (over a second of start-up on a 2-core host)."""
    weight = None
    if device is not None and torch.device(device).type == "meta":
        weight = torch.empty(num, dim, device=device, dtype=dtype)
    return nn.Embedding(num, dim, padding_idx=padding_idx, _weight=weight, device=device, dtype=dtype)


def to_empty(model: nn.Module, device) -> nn.Module:
    """`model.to_empty(device=device)` for a model built on meta, values unset, without torch's
    `empty_like` of a meta tensor: that runs Python references whose first use imports sympy."""
    return model._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device=device))
