"""Six-frame ORF identification, matching the original `identify_seq` record for record.

What the original does, per chunk (upper-cased first):
- F1..F3 translate from offsets 0, 1, 2; R1..R3 do the same on the reverse complement.
- A codon with any letter other than A/C/G/T translates to nothing: it is dropped, not 'X'.
- A frame is kept when its protein is non-empty and has no stop '*'.
- The nucleotide written for a kept frame is strand[frame : frame + 3 * len(protein) + 1],
  clipped at the chunk end.  Dropped codons are not counted, so around N runs the slice
  stops short of the translated region; without them it is the codons plus one base.

All chunks of a batch are translated at once: the chunks and, after them, their reverse
complements are concatenated, every position gets a codon number, table look-ups give its
amino acid, and range sums per (chunk, frame) count stops and amino acids to decide which
frames survive.  Only the kept frames are then cut out as strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from virnucpro.chunking import Chunk

FRAMES = ("F1", "F2", "F3", "R1", "R2", "R3")
_BATCH_BP = 1 << 20  # keeps the temporaries to some MB, and hands the first chunks over soon

# NCBI table 1, codons in TCAG order.
_BASES = "TCAG"
_CODE1 = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
_GENETIC_CODE = {a + b + c: _CODE1[16 * i + 4 * j + k]
                 for i, a in enumerate(_BASES) for j, b in enumerate(_BASES) for k, c in enumerate(_BASES)}
_COMPLEMENT = dict(zip("ACGTURYSWKMBDHVN", "TGCAAYRSWMKVHDBN"))


def _byte_table(mapping: dict[str, str]) -> bytes:
    """A bytes.translate table: identity except for `mapping`, which applies to both cases."""
    table = bytearray(range(256))
    for key, value in mapping.items():
        table[ord(key)] = table[ord(key.lower())] = ord(value)
    return bytes(table)


def _codon_tables() -> tuple[bytes, bytes, bytes]:
    """Base code 0..3 for A/C/G/T in either case and 4 for anything else, so that
    code[p] * 25 + code[p+1] * 5 + code[p+2] numbers every codon; then, per codon number,
    its amino acid (byte 0 = dropped) and a 1 where it is a stop."""
    code = bytearray([4] * 256)
    for i, base in enumerate("ACGT"):
        code[ord(base)] = code[ord(base.lower())] = i
    amino, stop = bytearray(256), bytearray(256)
    for i, a in enumerate("ACGT"):
        for j, b in enumerate("ACGT"):
            for k, c in enumerate("ACGT"):
                amino[25 * i + 5 * j + k] = ord(_GENETIC_CODE[a + b + c])
                stop[25 * i + 5 * j + k] = _GENETIC_CODE[a + b + c] == "*"
    return bytes(code), bytes(amino), bytes(stop)


_CODE, _AMINO, _IS_STOP = _codon_tables()
_IS_AMINO = bytes([0] + [1] * 255)
_REVCOMP = _byte_table(_COMPLEMENT)


@dataclass(frozen=True)
class ORF:
    id: str          # chunk_id + frame
    chunk_id: str
    frame: str       # one of FRAMES
    nucleotide: str  # upper case; the reverse-complement strand for R frames
    protein: str


def identify_orfs(chunks: Iterable[Chunk]) -> list[ORF]:
    """Stop-free frames of every chunk, in chunk order and then F1..R3."""
    return list(iter_orfs(chunks))


def iter_orfs(chunks: Iterable[Chunk]) -> Iterator[ORF]:
    """identify_orfs as a stream: chunks are translated in batches of about _BATCH_BP bases."""
    for _, orfs in iter_chunk_orfs(chunks):
        yield from orfs


def iter_chunk_orfs(chunks: Iterable[Chunk]) -> Iterator[tuple[Chunk, list[ORF]]]:
    """Every chunk with its stop-free frames (F1..R3, maybe none), in chunk order."""
    batch, size = [], 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk.seq)
        if size >= _BATCH_BP:
            yield from _by_chunk(batch)
            batch, size = [], 0
    if batch:
        yield from _by_chunk(batch)


def _by_chunk(batch: list[Chunk]) -> Iterator[tuple[Chunk, list[ORF]]]:
    found, k = _identify_batch(batch), 0
    for pos, chunk in enumerate(batch):
        mine = []
        while k < len(found) and found[k][0] == pos:
            mine.append(found[k][1])
            k += 1
        yield chunk, mine


def _frame_sums(codons: bytes, indicator: bytes, first: np.ndarray, n_codons: np.ndarray) -> np.ndarray:
    """How many of the n_codons codons at first, first + 3, ... the indicator marks.

    Viewed as rows of 3, each column of the codons holds one frame, so every range is a
    contiguous run of one column, and `np.add.reduceat` over the (start, end) row pairs of
    all runs in a column sums them in one pass; its sums from each end to the next start
    are dropped.  Runs go in position order so that those gaps stay short."""
    hits = np.frombuffer(codons.translate(indicator), np.uint8).reshape(-1, 3)
    first, n_codons = first.ravel(), n_codons.ravel()
    sums = np.zeros(len(first), np.int64)
    for col in range(3):
        runs = np.flatnonzero(first % 3 == col)
        runs = runs[np.argsort(first[runs], kind="stable")]
        bounds = np.repeat(first[runs] // 3, 2)
        bounds[1::2] += n_codons[runs]
        if len(bounds):
            sums[runs] = np.add.reduceat(hits[:, col], bounds, dtype=np.int64)[::2]
    # reduceat gives the element at the start, not 0, for an empty run.
    return np.where(n_codons > 0, sums, 0).reshape(-1, 6)


def _identify_batch(chunks: list[Chunk]) -> list[tuple[int, ORF]]:
    """(position of its chunk in `chunks`, ORF) of every kept frame."""
    # 'replace' keeps one byte per character, so offsets stay right even for stray non-ASCII.
    fwd = b"".join(c.seq.encode("ascii", "replace") for c in chunks)
    # The reverse complement of the whole batch holds every chunk's reverse complement
    # (in reverse chunk order), so after it R frames are plain forward frames.
    both = fwd.upper() + fwd.translate(_REVCOMP)[::-1]
    # Padding makes a codon start at every position, a whole number of rows of 3, and a
    # spare row, so that the end row of a run is a valid index.
    code = np.frombuffer((both + b"." * (5 + -len(both) % 3)).translate(_CODE), np.uint8)
    codons = (code[:-2] * 25 + code[1:-1] * 5 + code[2:]).tobytes()
    amino = codons.translate(_AMINO)

    lens = np.fromiter((len(c.seq) for c in chunks), np.int64, len(chunks))[:, None]
    starts = np.cumsum(lens)[:, None] - lens
    shift = np.arange(3)
    # Per chunk (rows) and frame F1..R3 (columns): first codon, codons, bases from there on.
    first = np.hstack([starts + shift, 2 * len(fwd) - starts - lens + shift])
    room = np.hstack([lens - shift] * 2)
    n_codons = np.maximum(room // 3, 0)
    n_aa = _frame_sums(amino, _IS_AMINO, first, n_codons)
    stops = _frame_sums(codons, _IS_STOP, first, n_codons)
    kept = np.flatnonzero((stops == 0) & (n_aa > 0))

    letters, amino = both.decode("ascii"), amino.decode("latin-1")
    out = []
    for g, a, c, p, r in zip(kept.tolist(), *(x.ravel()[kept].tolist() for x in (first, n_codons, n_aa, room))):
        chunk_id, frame = chunks[g // 6].id, FRAMES[g % 6]
        protein = amino[a:a + 3 * c:3]
        if p != c:
            protein = protein.replace("\0", "")
        out.append((g // 6, ORF(chunk_id + frame, chunk_id, frame, letters[a:a + min(3 * p + 1, r)], protein)))
    return out
