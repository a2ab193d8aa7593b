"""Benchmark inputs made from the real genomes that pyrodigal ships: a metagenome-like assembly
(contigs of 1-60 kb from several genomes, each contig a mutated copy of its own stretch, so no
two are alike) and short reads.  Deterministic for a seed; nothing is downloaded."""
from __future__ import annotations

import gzip
import os
from functools import lru_cache
from importlib import resources

import numpy as np

# C. diphtheriae NCTC 11397 (2.46 Mbp), E. coli MIIJ01000039 (870 kb), a Kutzneria scaffold
# (20 kb) and a metagenome contig (80 kb).
GENOMES = {"NCTC11397": "GCF_001457455.1_NCTC11397_genomic.fna.gz", "MIIJ01000039": "MIIJ01000039.fna.gz",
           "KK037166": "KK037166.fna.gz", "SRR492066": "SRR492066.fna.gz"}
CONTIG_BP = (1_000, 60_000)
_COMPLEMENT = np.zeros(256, np.uint8)
for a, b in zip(b"ACGTN", b"TGCAN"):
    _COMPLEMENT[a] = b
_BASES = np.frombuffer(b"ACGT", np.uint8)


@lru_cache(maxsize=None)
def genome(name: str) -> np.ndarray:
    """The genome's bases (all records joined) as upper-case ASCII codes."""
    path = resources.files("pyrodigal") / "tests" / "data" / GENOMES[name]
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        seq = "".join(line.strip() for line in f if not line.startswith(">"))
    return np.frombuffer(seq.upper().encode(), np.uint8)


def mutate(seq: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Substitutions at `rate` and single-base insertions and deletions at a tenth of it, as a
    related strain or a sequencing error would differ; the reverse strand half of the time."""
    out = seq.copy()
    hit = rng.random(len(out)) < rate
    out[hit] = _BASES[(np.searchsorted(_BASES, out[hit]) + rng.integers(1, 4, hit.sum())) % 4]
    indel = rng.random(len(out)) < rate / 10
    keep = ~(indel & (rng.random(len(out)) < 0.5))
    ins = indel & keep
    out = np.insert(out[keep], np.flatnonzero(ins[keep]), _BASES[rng.integers(0, 4, ins.sum())])
    return _COMPLEMENT[out[::-1]] if rng.random() < 0.5 else out


def _pick(rng: np.random.Generator) -> str:
    names = list(GENOMES)
    sizes = np.array([len(genome(n)) for n in names], float)
    return names[rng.choice(len(names), p=sizes / sizes.sum())]


def metagenome(total_bp: int, seed: int = 0, rate=(0.005, 0.03)) -> list[tuple[str, str]]:
    """Contigs of log-uniform length in CONTIG_BP, drawn from the genomes in proportion to their
    size, each from a random place with its own mutation rate, until `total_bp` is reached."""
    rng = np.random.default_rng(seed)
    records, total = [], 0
    while total < total_bp:
        name = _pick(rng)
        g = genome(name)
        length = int(min(len(g), np.exp(rng.uniform(*np.log(CONTIG_BP))), total_bp - total + CONTIG_BP[0]))
        start = int(rng.integers(0, len(g) - length + 1))
        seq = mutate(g[start:start + length], rng.uniform(*rate), rng)
        records.append((f"contig{len(records) + 1}_{name}_{start}", seq.tobytes().decode()))
        total += len(seq)
    return records


def reads(n: int, length: int = 150, seed: int = 0, rate=(0.001, 0.02)) -> list[tuple[str, str]]:
    """`n` reads of `length` bp from all the genomes, each with its own error rate (indels can
    make a read a base shorter or longer); no two alike."""
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    while len(out) < n:
        name = _pick(rng)
        g = genome(name)
        start = int(rng.integers(0, len(g) - length))
        seq = mutate(g[start:start + length], rng.uniform(*rate), rng).tobytes().decode()
        if seq not in seen:
            seen.add(seq)
            out.append((f"read{len(out) + 1}_{name}_{start}", seq))
    return out


def sequence(filename: str) -> str:
    """The bases of one of pyrodigal's genome files, all records joined, as written there."""
    path = resources.files("pyrodigal") / "tests" / "data" / filename
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        return "".join(line.strip() for line in f if not line.startswith(">"))


def genome_reads(genome: str, n: int, length: int, seed: int) -> list[tuple[str, str]]:
    """n error-free reads of the genome at random places, every second one reverse-complemented."""
    starts = np.random.default_rng(seed).integers(0, len(genome) - length, size=n)
    flip = str.maketrans("ACGTN", "TGCAN")
    return [(f"read{k + 1}", genome[s:s + length].translate(flip)[::-1] if k % 2 else genome[s:s + length])
            for k, s in enumerate(starts)]


def write_fasta(path, records) -> None:
    """Records as FASTA, 80 bases a line, written whole or not at all."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for rid, seq in records:
            f.write(f">{rid}\n")
            f.writelines(seq[i:i + 80] + "\n" for i in range(0, len(seq), 80))
    os.replace(tmp, path)
