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


def test_oversized_item_gets_its_own_batch():
    batches = token_budget_batches([5000, 3, 3, 3, 98], budget=100)
    assert [b.tolist() for b in batches] == [[0], [4], [1, 2, 3]]
    with pytest.raises(ValueError):
        token_budget_batches([1], budget=0)


def test_first_batch_has_its_own_budget():
    lengths = [10] * 40
    batches = token_budget_batches(lengths, budget=100, first_budget=25)
    assert [len(b) for b in batches] == [2, 10, 10, 10, 8]
    # An item longer than the first budget still gets a batch, of its own.
    assert [len(b) for b in token_budget_batches([50, 10, 10], budget=100, first_budget=20)] == [1, 2]
    with pytest.raises(ValueError):
        token_budget_batches([1], budget=10, first_budget=0)


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


def test_run_batched_first_budget():
    lists = [[1] * 10 for _ in range(100)]
    tokens = []
    fn = lambda b: (tokens.append(sum(map(len, b))), torch.zeros(len(b), 1))[1]  # noqa: E731
    run_batched(lists, budget=400, fn=fn, dim=1, first_budget=50)
    assert tokens == [50, 400, 400, 150]


def test_first_batch_budget_only_on_gpu_and_large_budgets():
    from virnucpro.embed import first_batch_budget

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert first_batch_budget(1 << 20, cuda) == 1 << 17
    assert first_batch_budget(100_000, cuda) == 1 << 15
    assert first_batch_budget(2048, cuda) == 2048  # the reference engine's ESM-2 batches
    assert first_batch_budget(1, cuda) == 1
    assert first_batch_budget(1 << 20, cpu) is None
