"""Reading, chunking and translating the inputs: the stages before any model, free of torch so
that a bad input is refused before the seconds that importing torch takes."""
from __future__ import annotations

import os
import tempfile
import time
import weakref
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from virnucpro import faults, owned
from virnucpro.chunking import Chunk, count_chunks, iter_chunks
from virnucpro.errors import InputError, VirnucproError
from virnucpro.fasta import FastaReader, Record
from virnucpro.spool import Chunks, Spool
from virnucpro.stream import RangeStream
from virnucpro.translate import ORF, iter_chunk_orfs

SKIP_EMPTY = "empty_sequence"
SKIP_NO_ORF = "no_stop_free_frame"


class FileRecords:
    """The records of one input, read again from the copy its first reading made each time
    they are iterated, so that none is held in memory (`release` removes the copy).  The bytes
    must hash as they did the first time."""

    def __init__(self, source: Path, label: str, sha256: str, count: int):
        self.source, self.label, self.sha256, self.count = source, label, sha256, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Record]:
        reader, changed = FastaReader(self.source), f"{self.label}: its copy in {self.source.parent} changed while virnucpro was reading it"
        try:
            yield from reader
        except InputError as e:
            raise InputError(f"{changed} ({e})") from None
        if reader.sha256 != self.sha256:
            raise InputError(changed)

    def release(self) -> None:
        _unlink(self.source)


def _unlink(path: Path) -> None:
    with suppress(OSError):
        os.unlink(path)


@dataclass
class InputData:
    """One input.  `records` can be iterated again and again (a list, or FileRecords); after
    `prepare`, `chunks`, `orfs` and `skipped` are too, read from its spool on disk."""
    path: Path
    records: Iterable[Record]
    skipped: Iterable[tuple[str, str]]
    chunks: Sequence[Chunk] = field(default_factory=list)
    orfs: Sequence[ORF] = field(default_factory=list)
    sha256: str | None = None  # of the raw bytes, taken while they were read
    rna_bases: int = 0  # U/u read as T/t
    protein_tokens: int = 0  # ESM-2 tokens of all ORFs
    spool: Spool | None = None
    lengths: Sequence[int] | None = None  # of the records, taken while they were read

    def chunk_count(self, chunk_len: int) -> int:
        """How many chunks `prepare` will cut, known before it runs: the checkpoint ranges
        are spans of chunks, so that scoring can start before the input is translated."""
        lengths = self.lengths if self.lengths is not None else [len(r.seq) for r in self.records]
        return count_chunks(lengths, chunk_len)

    @property
    def stem(self) -> str:
        return "stdin" if str(self.path) == "-" else output_stem(self.path)

    def release(self) -> None:
        """Removes what this input keeps on disk: its spool and the copy of its bytes."""
        if self.spool is not None:
            self.spool.remove()
        if isinstance(self.records, FileRecords):
            self.records.release()


class StageClock:
    """Seconds per stage.  Stages may nest (translation pulls chunks, which pull records): time
    in an inner stage counts for it alone, so the stages add up to the wall time.  One thread
    at a time per clock."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._open: list[list] = []  # [stage, since] of the stages entered and not left

    def _add(self, stage: str, since: float, now: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since

    @contextmanager
    def __call__(self, stage: str):
        now = time.perf_counter()
        if self._open:
            self._add(*self._open[-1], now)
        self._open.append([stage, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            self._add(*self._open.pop(), now)
            if self._open:
                self._open[-1][1] = now


def output_stem(path: Path) -> str:
    """The name of an input's result folder OUT/<stem>/: its file name without leading dots and
    without one FASTA and one gzip suffix (`reads.fna.gz` -> `reads`, `.virnucpro.fa` -> `virnucpro`),
    every character that is not printable (control characters, bytes that are not UTF-8) replaced
    by `_`.  So a stem is never `.`, `..` or a name starting with a dot, which OUT keeps for the
    program's own files.  Empty when nothing is left (a name of dots only): read_inputs refuses it."""
    name = path.name.lstrip(".")
    for suffix in (".gz", ".fasta", ".fna", ".fa", ".fas", ".ffn", ".txt"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return "".join(c if c.isprintable() else "_" for c in name)


def read_input(p: str | Path) -> InputData:
    """Reads and validates one input without keeping its records, and copies its raw bytes to a
    temp file (under TMPDIR) on the way: the input itself is read once, whatever it is (a file,
    a pipe, a FIFO, stdin), and the later passes read the copy."""
    path = Path(p)
    copy = tempfile.NamedTemporaryFile(prefix="virnucpro-input-", delete=False)
    try:
        reader = FastaReader(p, copy_to=copy)
        lengths = array("q", (len(rec.seq) for rec in reader))
        copy.close()
    except BaseException:
        copy.close()
        os.unlink(copy.name)
        raise
    records = FileRecords(Path(copy.name), reader.label, reader.sha256, len(lengths))
    weakref.finalize(records, _unlink, records.source)  # for callers that never `release` it
    return InputData(path, records, [(rid, SKIP_EMPTY) for rid, _ in reader.skipped], sha256=reader.sha256,
                     rna_bases=reader.rna_bases, lengths=lengths)


def read_inputs(paths: list[str | Path]) -> list[InputData]:
    inputs, seen = [], {}
    try:
        for p in paths:
            data = read_input(p)
            inputs.append(data)
            if not owned.plain_name(data.stem):
                raise InputError(f"{owned.shown(data.path)}: no output folder name can be made from this file "
                                 "name (empty or too long once leading dots and suffixes are taken off); rename it")
            # casefold: two stems that differ only in case are one folder on macOS and Windows file systems
            key = data.stem.casefold()
            if key in seen:
                raise InputError(f"{owned.shown(data.path)}: output name '{data.stem}' clashes with input "
                                 f"{owned.shown(seen[key])}; rename one")
            seen[key] = data.path
    except BaseException:
        for data in inputs:
            data.release()
        raise
    return inputs


def _timed(items: Iterable, clock: StageClock, stage: str) -> Iterator:
    it = iter(items)
    while True:
        with clock(stage):
            item = next(it, _END)
        if item is _END:
            return
        yield item


_END = object()


def prepare(data: InputData, chunk_len: int, clock: StageClock, spool_dir: Path | None = None,
            keep_chunk_seqs: bool = True, stream: RangeStream | None = None) -> InputData:
    """Chunks and translates one input into a spool under `spool_dir` (a temp folder if None,
    removed with the InputData), one record at a time.  With a `stream` (spans of chunks), each
    span's ORFs are published as soon as its last chunk is translated."""
    empties = [(rid, reason) for rid, reason in data.skipped if reason == SKIP_EMPTY]
    if data.spool is not None:
        data.spool.remove()
    spool = Spool(Path(spool_dir) if spool_dir is not None else Path(tempfile.mkdtemp(prefix="virnucpro-spool-")))
    if spool_dir is None:
        weakref.finalize(data, spool.remove)
    try:
        for rid, reason in empties:
            spool.skipped.add(rid, reason)

        def records():
            for rec in _timed(data.records, clock, "read"):
                spool.add_record(rec.id, len(rec.seq))
                yield rec

        chunks = _timed(iter_chunks(records(), chunk_len), clock, "chunk")
        translated = iter_chunk_orfs(chunks)
        done, end = 0, stream.next_end() if stream is not None else None
        while True:
            with clock("translate"):
                item = next(translated, _END)
                if item is _END:
                    break
                chunk, orfs = item
                spool.add_chunk(chunk, orfs, keep_chunk_seqs)
                if not orfs:
                    spool.skipped.add(chunk.id, SKIP_NO_ORF)
                done += 1
                while done == end:  # a range of no chunks has none to wait for
                    faults.point("chunking")
                    stream.publish(spool.orf_count, spool.orf_path, spool.flush_orfs())
                    end = stream.next_end()
        if stream is None:
            faults.point("chunking")
        elif not stream.complete():
            raise VirnucproError(f"{data.path}: {done} chunks were cut, but the checkpoint ranges were laid out "
                                 f"for {stream.spans[-1][1]}")
        data.orfs = spool.close()
    except BaseException:
        spool.remove()
        raise
    data.spool, data.chunks, data.skipped = spool, Chunks(spool.chunks), spool.skipped
    data.protein_tokens = spool.protein_tokens
    return data
