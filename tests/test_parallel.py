import numpy as np
import pytest

from virnucpro.errors import InputError
from virnucpro.parallel import parse_gpus, shard


@pytest.mark.parametrize("spec,available,expected", [
    ("all", 4, [0, 1, 2, 3]), ("2", 4, [0, 1]), ("0,2,3", 4, [0, 2, 3]), (" 1 ", 2, [0]), ("3,1", 8, [3, 1]),
])
def test_parse_gpus(spec, available, expected):
    assert parse_gpus(spec, available) == expected


@pytest.mark.parametrize("spec,available", [
    ("5", 4), ("0", 4), ("0,0", 4), ("0,7", 4), ("x", 4), ("1,a", 4), ("all", 0), ("", 2),
])
def test_parse_gpus_rejects(spec, available):
    with pytest.raises(InputError, match="--gpus"):
        parse_gpus(spec, available)


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shard_is_a_balanced_partition(world):
    rng = np.random.default_rng(world)
    lengths = rng.integers(10, 170, size=1001)
    parts = shard(lengths, world)
    assert len(parts) == world
    assert sorted(np.concatenate(parts).tolist()) == list(range(1001))
    tokens = [lengths[p].sum() for p in parts]
    assert max(tokens) - min(tokens) <= lengths.max()
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1

