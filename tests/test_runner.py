import numpy as np
import pytest
import torch

from virnucpro.runner import pack, run_batched, token_budget_batches


def test_batches_cover_every_item_once_and_respect_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=500)
    batches = token_budget_batches(lengths, budget=1000)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for b in batches:
        assert lengths[b].sum() <= 1000 or len(b) == 1


def test_oversized_item_gets_its_own_batch_and_max_items_holds():
    batches = token_budget_batches([5000, 3, 3, 3], budget=100, max_items=2)
    assert [len(b) for b in batches] == [1, 2, 1]
    with pytest.raises(ValueError):
        token_budget_batches([1], budget=0)


def test_pack_offsets():
    tokens, cu, max_len = pack([[1, 2, 3], [4], [5, 6]])
    assert tokens.tolist() == [1, 2, 3, 4, 5, 6]
    assert cu.tolist() == [0, 3, 4, 6] and cu.dtype == torch.int32
    assert max_len == 3


def test_run_batched_returns_rows_in_input_order():
    lists = [[i] * (1 + (i * 7) % 13) for i in range(50)]
    seen = []

    def fn(batch):
        seen.append(len(batch))
        return torch.tensor([[float(b[0]), float(len(b))] for b in batch])

    out = run_batched(lists, budget=30, fn=fn, dim=2, on_batch=lambda n: None)
    assert out[:, 0].tolist() == list(range(50))
    assert out[:, 1].tolist() == [len(x) for x in lists]
    assert len(seen) > 1
