"""`virnucpro orfs` as a stream: chunks.fa, orfs.fna and orfs.faa are written as the input
is read, so memory follows the largest record, not the input.

Each file is written under a temp name in the output folder and renamed into place once
the whole input has been read: a bad record found late, a full disk or an unwritable
folder leaves no partial file, and removes again the folders this run created.
"""
from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from virnucpro import faults
from virnucpro.durable import fsync_dir, writing
from virnucpro.chunking import Chunk, iter_chunks
from virnucpro.fasta import Record, write_records
from virnucpro.translate import iter_orfs

NAMES = ("chunks.fa", "orfs.fna", "orfs.faa")


@dataclass
class Counts:
    sequences: int = 0
    chunks: int = 0
    orfs: int = 0


def write_orf_files(out: Path, records: Iterable[Record], chunk_len: int) -> Counts:
    out = Path(out)
    created = [d for d in (out, *out.parents) if not d.exists()]  # deepest first
    temps = {name: out / f".{name}.tmp-{os.getpid()}" for name in NAMES}
    files, counts = [], Counts()
    try:
        with writing(out):
            out.mkdir(parents=True, exist_ok=True)
            files = [open(temps[name], "x", encoding="utf-8", newline="\n") for name in NAMES]
            chunks_fa, fna, faa = files
            for orf in iter_orfs(_written(chunks_fa, iter_chunks(_counted(records, counts), chunk_len), counts)):
                write_records(fna, [(orf.id, orf.nucleotide)])
                write_records(faa, [(orf.id, orf.protein)])
                counts.orfs += 1
            faults.point("write", temps["orfs.faa"])
            for f in files:
                f.flush()
                os.fsync(f.fileno())
                f.close()
            for name in NAMES:
                os.replace(temps[name], out / name)
            fsync_dir(out)
    except BaseException:
        for f in files:
            with suppress(OSError):
                f.close()
        for path in temps.values():
            with suppress(OSError):
                path.unlink()
        for d in created:
            with suppress(OSError):
                d.rmdir()  # only ever empty: it holds nothing but the temp files just removed
        raise
    return counts


def _counted(records: Iterable[Record], counts: Counts) -> Iterator[Record]:
    for rec in records:
        counts.sequences += 1
        yield rec


def _written(out, chunks: Iterable[Chunk], counts: Counts) -> Iterator[Chunk]:
    for chunk in chunks:
        write_records(out, [(chunk.id, chunk.seq)])
        counts.chunks += 1
        yield chunk
