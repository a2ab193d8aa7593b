"""Reading, chunking and translating the inputs: the stages before any model, free of torch so
that a bad input is refused before the seconds that importing torch takes."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from virnucpro import faults, owned
from virnucpro.chunking import Chunk, chunk_records
from virnucpro.errors import InputError
from virnucpro.fasta import FastaReader, Record
from virnucpro.translate import ORF, identify_orfs

SKIP_EMPTY = "empty_sequence"
SKIP_NO_ORF = "no_stop_free_frame"


@dataclass
class InputData:
    path: Path
    records: list[Record]
    skipped: list[tuple[str, str]]
    chunks: list[Chunk] = field(default_factory=list)
    orfs: list[ORF] = field(default_factory=list)
    sha256: str | None = None  # of the raw bytes, taken while they were read
    rna_bases: int = 0  # U/u read as T/t

    @property
    def stem(self) -> str:
        return "stdin" if str(self.path) == "-" else output_stem(self.path)


class StageClock:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


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


def read_inputs(paths: list[str | Path]) -> list[InputData]:
    inputs, seen = [], {}
    for p in paths:
        path = Path(p)
        reader = FastaReader(p)
        records = list(reader)  # each input is read once: a pipe or stdin cannot be read again
        data = InputData(path, records, [(rid, SKIP_EMPTY) for rid, _ in reader.skipped], sha256=reader.sha256,
                         rna_bases=reader.rna_bases)
        if not owned.plain_name(data.stem):
            raise InputError(f"{owned.shown(path)}: no output folder name can be made from this file name "
                             "(empty or too long once leading dots and suffixes are taken off); rename it")
        # casefold: two stems that differ only in case are one folder on macOS and Windows file systems
        key = data.stem.casefold()
        if key in seen:
            raise InputError(f"{owned.shown(path)}: output name '{data.stem}' clashes with input "
                             f"{owned.shown(seen[key])}; rename one")
        seen[key] = path
        inputs.append(data)
    return inputs


def prepare(data: InputData, chunk_len: int, clock: StageClock) -> InputData:
    with clock("chunk"):
        data.chunks = chunk_records(data.records, chunk_len)
    faults.point("chunking")
    with clock("translate"):
        data.orfs = identify_orfs(data.chunks)
    with_orf = {o.chunk_id for o in data.orfs}
    data.skipped += [(c.id, SKIP_NO_ORF) for c in data.chunks if c.id not in with_orf]
    return data
