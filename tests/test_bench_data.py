"""The benchmark inputs made from pyrodigal's genomes (benchmarks/datasets.py)."""
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("pyrodigal")
from benchmarks import datasets  # noqa: E402


def _shared_kmers(seq: str, source: np.ndarray, k: int = 20) -> float:
    """Fraction of the contig's k-mers found in its source stretch, either strand: about
    (1 - rate)^k for substitutions at `rate`, and indels only cost the k-mers across them."""
    fwd = source.tobytes().decode()
    rev = datasets._COMPLEMENT[source[::-1]].tobytes().decode()
    known = {s[i:i + k] for s in (fwd, rev) for i in range(len(s) - k + 1)}
    kmers = [seq[i:i + k] for i in range(len(seq) - k + 1)]
    return sum(m in known for m in kmers) / len(kmers)


def test_metagenome_is_many_distinct_mutated_contigs_from_several_genomes():
    records = datasets.metagenome(2_000_000, seed=3)
    lengths = [len(s) for _, s in records]
    assert sum(lengths) >= 2_000_000 and len(records) > 100
    assert min(lengths) >= 0.99 * datasets.CONTIG_BP[0] and max(lengths) <= 1.01 * datasets.CONTIG_BP[1]
    assert len({s for _, s in records}) == len(records) and len({r for r, _ in records}) == len(records)
    sources = Counter(rid.split("_")[1] for rid, _ in records)
    assert len(sources) >= 3, sources
    assert datasets.metagenome(2_000_000, seed=3) == records and datasets.metagenome(2_000_000, seed=4) != records
    for rid, seq in records[:20]:  # each is its source stretch, mutated
        _, name, start = rid.split("_")
        g = datasets.genome(name)
        start = int(start)
        assert 0.3 < _shared_kmers(seq, g[start:start + len(seq) + 50]) < 1.0


def test_reads_are_short_mutated_and_from_every_genome():
    records = datasets.reads(2_000, seed=5)
    assert len(records) == 2_000 and all(140 <= len(s) <= 160 for _, s in records)
    assert len(Counter(rid.split("_")[1] for rid, _ in records)) >= 3
    assert len({s for _, s in records}) == len(records)
