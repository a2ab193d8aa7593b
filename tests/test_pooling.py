"""segment_sums: the per-sequence sums of both embedders' mean pooling."""
import pytest
import torch

from virnucpro.models.pooling import segment_sums


def _batch(device="cpu"):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 130, 1, 0, 77, 300, 2])
    x = torch.randn(int(lengths.sum()), 96, generator=g) * 3
    return x.to(device), lengths.to(device)


def test_sums_each_sequence_and_matches_index_add_bit_for_bit_on_cpu():
    x, lengths = _batch()
    seq = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    expected = x.new_zeros(len(lengths), x.shape[1]).index_add_(0, seq, x)
    got = segment_sums(x, lengths)
    assert torch.equal(got, expected)  # the CPU results of earlier versions stay as they were
    assert torch.equal(got[3], torch.zeros(96))  # an empty sequence sums to zero
    assert torch.allclose(got[1], x[5:135].sum(0), atol=1e-4)


def test_empty_batch():
    assert segment_sums(torch.empty(0, 8), torch.zeros(3, dtype=torch.long)).shape == (3, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_sums_are_the_same_every_time():
    x, lengths = _batch("cuda")
    first = segment_sums(x, lengths)
    assert all(torch.equal(segment_sums(x, lengths), first) for _ in range(20))
    assert torch.allclose(first.cpu(), segment_sums(x.cpu(), lengths.cpu()), atol=1e-4)
