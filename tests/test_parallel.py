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



def _record_whether_the_master_port_is_held(folder):
    import os
    import socket
    from pathlib import Path

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", int(os.environ["MASTER_PORT"])))
            held = False
        except OSError:
            held = True
    Path(folder, os.environ["RANK"]).write_text(str(held))


def test_the_rendezvous_port_stays_bound_by_the_launcher_while_workers_start(tmp_path):
    """A port found free and let go could be taken by another run before rank 0 binds it
    (EADDRINUSE, seen with concurrent runs): the launcher must hold it from the start."""
    from virnucpro import parallel

    parallel.spawn(_record_whether_the_master_port_is_held, (str(tmp_path),), 2, None)
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["True", "True"]
