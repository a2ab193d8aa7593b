"""Chunks and ORFs against the original program's own output, and against a plain
per-codon re-statement of its rules on random sequences the golden files do not cover."""
import random

import pytest
from Bio import SeqIO
from Bio.Data.CodonTable import standard_dna_table
from Bio.Seq import reverse_complement

from conftest import DATA
from virnucpro import translate
from virnucpro.chunking import Chunk, chunk_bounds, chunk_records
from virnucpro.fasta import Record, read_fasta
from virnucpro.translate import FRAMES, identify_orfs

INPUTS = {"edge_cases": "edge_cases.fa", "KK037166": "KK037166.fna", "SRR492066": "SRR492066.fna"}


def expected(name: str) -> list[tuple[str, str]]:
    return [(r.id, str(r.seq)) for r in SeqIO.parse(DATA / name, "fasta")]


@pytest.fixture(scope="module", params=[(stem, length) for stem in INPUTS for length in (300, 500)],
                ids=lambda p: f"{p[0]}-{p[1]}")
def golden_run(request):
    stem, length = request.param
    records, skipped = read_fasta(DATA / INPUTS[stem])
    assert skipped == []
    chunks = chunk_records(records, length)
    return f"{stem}_chunked{length}", chunks, identify_orfs(chunks)


def test_chunks_match_original(golden_run):
    prefix, chunks, _ = golden_run
    assert [(c.id, c.seq) for c in chunks] == expected(f"{prefix}.fa")


def test_nucleotide_orfs_match_original(golden_run):
    prefix, _, orfs = golden_run
    assert [(o.id, o.nucleotide) for o in orfs] == expected(f"{prefix}_identified_nucleotide.fa")


def test_proteins_match_original(golden_run):
    prefix, _, orfs = golden_run
    assert [(o.id, o.protein) for o in orfs] == expected(f"{prefix}_identified_protein.faa")


@pytest.mark.parametrize("chunk_len", [1, 2, 3, 7, 300, 500])
def test_chunk_bounds_cover_sequence_in_order(chunk_len):
    for length in list(range(0, 40)) + [299, 300, 301, 999, 1000, 1001, 20000, 79939]:
        bounds = chunk_bounds(length, chunk_len)
        assert len(bounds) == -(-length // chunk_len)
        if not bounds:
            continue
        assert bounds[0][0] == 0 and bounds[-1][1] == length
        for (s0, e0), (s1, e1) in zip(bounds, bounds[1:]):
            assert s0 < s1 <= e0 and e1 - s1 <= chunk_len
            assert e0 - s0 == chunk_len  # only the last chunk may be short


def test_chunk_records_fields_and_bad_length():
    chunks = chunk_records([Record("r", "r", "ACGTA" * 130), Record("s", "s", "acg")], 300)
    assert [(c.id, c.parent, c.index) for c in chunks] == [
        ("r_chunk_1", "r", 1), ("r_chunk_2", "r", 2), ("r_chunk_3", "r", 3), ("s_chunk_1", "s", 1)]
    assert chunks[-1].seq == "acg"
    with pytest.raises(ValueError):
        chunk_records([Record("r", "r", "ACGT")], 0)


def reference_orfs(chunk: Chunk) -> list[tuple[str, str, str]]:
    """The original's rules, one codon at a time, with Biopython's code and complement."""
    code = dict(standard_dna_table.forward_table, **{c: "*" for c in standard_dna_table.stop_codons})
    seq = chunk.seq.upper()
    out = []
    for strand, letters in (("F", seq), ("R", reverse_complement(seq))):
        for f in range(3):
            protein = "".join(code.get(letters[i:i + 3], "") for i in range(f, len(letters) - 2, 3))
            if protein and "*" not in protein:
                out.append((chunk.id + strand + str(f + 1), letters[f:f + 3 * len(protein) + 1], protein))
    return out


def random_chunks(rng: random.Random, count: int) -> list[Chunk]:
    # Mostly ACGT so that stop-free frames exist; N runs, IUPAC and lower case mixed in.
    alphabet = "ACGT" * 30 + "acgt" * 5 + "NNRYKMSWBDHV"
    chunks = []
    for i in range(count):
        length = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, rng.randrange(8, 60), rng.randrange(60, 400)])
        seq = "".join(rng.choice(alphabet) for _ in range(length))
        if rng.random() < 0.2 and length > 10:
            start = rng.randrange(length - 5)
            seq = seq[:start] + "N" * rng.randrange(1, 12) + seq[start:]
        chunks.append(Chunk(f"c{i}_chunk_1", f"c{i}", 1, seq))
    return chunks


@pytest.mark.parametrize("batch_bp", [1 << 22, 50])
def test_vectorised_orfs_equal_per_codon_reference(monkeypatch, batch_bp):
    monkeypatch.setattr(translate, "_BATCH_BP", batch_bp)  # 50: many small batches
    chunks = random_chunks(random.Random(batch_bp), 600)
    want = [orf for chunk in chunks for orf in reference_orfs(chunk)]
    got = identify_orfs(chunks)
    assert [(o.id, o.nucleotide, o.protein) for o in got] == want
    assert len(want) > 300  # the random chunks must exercise kept frames, not only rejections
    for o in got:
        assert o.id == o.chunk_id + o.frame and o.frame in FRAMES


def test_no_chunks_no_orfs():
    assert identify_orfs([]) == []
