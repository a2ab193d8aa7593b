"""One input's records, chunks and ORFs on disk between reading and writing its results, so
that `predict`'s memory does not grow with the input: tables of tab-separated lines, written
once by `prepare` and read back as often as needed.  ORFs are read by index (checkpoint
ranges take slices), through one byte offset per ORF.  Fields never hold a tab or a line
break: ids are a header's first word, sequences IUPAC letters (fasta.FastaReader checks)."""
from __future__ import annotations

import shutil
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Iterator

from virnucpro.chunking import Chunk
from virnucpro.translate import ORF

ENC = "utf-8", "surrogateescape"  # a header's bytes come back as they were read


def _line(*fields) -> bytes:
    return ("\t".join(map(str, fields)) + "\n").encode(*ENC)


def _fields(line: bytes) -> list[str]:
    return line.decode(*ENC).rstrip("\n").split("\t")


class Table:
    """Lines of one kind, appended in order; iterable again and again, with a length."""

    def __init__(self, path: Path, parse):
        self.path, self._parse, self._n, self._out = path, parse, 0, open(path, "wb")

    def add(self, *fields) -> int:
        """Appends one line; returns its byte offset."""
        at = self._out.tell()
        self._out.write(_line(*fields))
        self._n += 1
        return at

    def flush(self) -> int:
        """Makes every line so far readable by others; returns the file's length."""
        self._out.flush()
        return self._out.tell()

    def close(self) -> None:
        self._out.close()

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator:
        with open(self.path, "rb", buffering=1 << 20) as f:
            for line in f:
                yield self._parse(_fields(line))


def _orf(f: list[str]) -> ORF:
    return ORF(f[0] + f[1], f[0], f[1], f[2], f[3])


def read_orfs(path: Path, start: int, end: int) -> list[ORF]:
    """The ORFs whose lines fill bytes start..end of an ORF table."""
    with open(path, "rb") as f:
        f.seek(start)
        block = f.read(end - start)
    return [_orf(_fields(line)) for line in block.splitlines(keepends=True)]


class Orfs(Sequence):
    """The ORF table: a read-only sequence of ORF, in order, read from disk on demand."""

    def __init__(self, table: Table, offsets: array):
        self._table, self._offsets = table, offsets  # offsets: one per ORF, then the file's end

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __iter__(self) -> Iterator[ORF]:
        return iter(self._table)

    def __getitem__(self, i):
        if isinstance(i, slice):
            a, b, step = i.indices(len(self))
            if step != 1:
                return [self[k] for k in range(a, b, step)]
            if a >= b:
                return []
            return read_orfs(self._table.path, self._offsets[a], self._offsets[b])
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        return self[i % n:i % n + 1][0]


class Chunks:
    """The chunk table as a sequence of Chunk to iterate; `with_orf_counts` adds each one's ORFs."""

    def __init__(self, table: Table):
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[Chunk]:
        return (c for c, _ in self._table)

    def with_orf_counts(self) -> Iterator[tuple[Chunk, int]]:
        return iter(self._table)


class Spool:
    """The tables of one input under `folder`, which this object owns and `remove`s."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.records = Table(self.folder / "records.tsv", lambda f: (f[0], int(f[1])))
        self.chunks = Table(self.folder / "chunks.tsv", lambda f: (Chunk(f[0], f[1], int(f[2]), f[4]), int(f[3])))
        self._orfs = Table(self.folder / "orfs.tsv", _orf)
        self.skipped = Table(self.folder / "skipped.tsv", tuple)
        self._offsets = array("q")
        self.protein_tokens = 0  # ESM-2 tokens of all ORFs: residues plus <cls> and <eos>

    def add_record(self, rid: str, length: int) -> None:
        self.records.add(rid, length)

    def add_chunk(self, chunk: Chunk, orfs: list[ORF], keep_seq: bool) -> None:
        self.chunks.add(chunk.id, chunk.parent, chunk.index, len(orfs), chunk.seq if keep_seq else "")
        for o in orfs:
            self._offsets.append(self._orfs.add(o.chunk_id, o.frame, o.nucleotide, o.protein))
            self.protein_tokens += len(o.protein) + 2

    @property
    def orf_count(self) -> int:
        return len(self._offsets)

    @property
    def orf_path(self) -> Path:
        return self._orfs.path

    def flush_orfs(self) -> int:
        """The ORF table so far on disk, for a reader in another thread; returns its length."""
        return self._orfs.flush()

    def close(self) -> Orfs:
        for t in (self.records, self.chunks, self._orfs, self.skipped):
            t.close()
        self._offsets.append(self._orfs.path.stat().st_size)
        return Orfs(self._orfs, self._offsets)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
