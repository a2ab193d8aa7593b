"""FASTA records: the parser of one record's text (ids, letters, RNA), and plain FASTA writing."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from virnucpro.errors import InputError

# IUPAC nucleotide codes (U included: RNA input is nucleotide input too).
NUCLEOTIDE_LETTERS = "ACGTURYSWKMBDHVN"
_VALID_CHARS = frozenset(NUCLEOTIDE_LETTERS + NUCLEOTIDE_LETTERS.lower())
_VALID = "".join(sorted(_VALID_CHARS)).encode()
# Letters that occur in proteins but are no nucleotide code.
_AMINO_ONLY = set("EFIJLOPQXZ*efijlopqxz")
_NUCLEOTIDE_CORE = b"ACGTUNacgtun"


@dataclass(frozen=True)
class Record:
    id: str           # first word of the header
    description: str  # the whole header line after '>', as Biopython's SeqRecord.description
    seq: str          # line breaks removed, case preserved, U read as T


class RecordParser:
    """The record being read: header pieces, then sequence pieces with line breaks removed."""

    def __init__(self, reader, sniff: int):
        self.reader = reader  # a FastaReader: its label, _error, rna_bases and skipped
        self.sniff = sniff  # the first header line must end within this many characters
        self.header: list[str] = []
        self.in_header = True
        self.body: list[str] = []
        self.suspect = False  # a piece held a letter that is no nucleotide code
        self.number = 1
        self.ids: dict[str, int] = {}

    def feed(self, piece: str, stream_pos: int) -> None:
        """More of the current record: header until its line ends, sequence after."""
        if not self.in_header:
            self.add_body(piece)
            return
        end = piece.find("\n")
        self.header.append(piece if end < 0 else piece[:end])
        if self.number == 1 and stream_pos + (len(piece) if end < 0 else end) > self.sniff:
            raise self.reader._error(f"no FASTA header line ends in the first {self.sniff // 1024} KiB; "
                                     "is this a FASTA file?")
        if end >= 0:
            self.in_header = False
            self.add_body(piece[end + 1:])

    def whole(self, header: str, body: str) -> Iterator[Record]:
        self.header, self.in_header = [header], False
        self.add_body(body)
        return self.finish()

    def add_body(self, piece: str) -> None:
        if not piece:
            return
        piece = piece.replace("\n", "")
        if " " in piece or "\t" in piece:
            piece = piece.replace(" ", "").replace("\t", "")
        if not piece.isascii() or piece.encode("ascii").translate(None, _VALID):
            self.suspect = True
        if "U" in piece or "u" in piece:
            self.reader.rna_bases += piece.count("U") + piece.count("u")
            piece = piece.replace("U", "T").replace("u", "t")
        self.body.append(piece)

    def finish(self) -> Iterator[Record]:
        header, seq, suspect, number = "".join(self.header), "".join(self.body), self.suspect, self.number
        self.header, self.in_header, self.body, self.suspect, self.number = [], True, [], False, number + 1
        description = header.strip()
        rid = description.split(None, 1)[0] if description else ""
        reader = self.reader
        if not rid:
            raise reader._error(f"record #{number} has an empty header (no id)")
        if rid in self.ids:
            raise reader._error(f"duplicate record id {rid!r} (records #{self.ids[rid]} and #{number})")
        self.ids[rid] = number
        if not seq:
            reader.skipped.append((rid, "empty sequence"))
            return
        if suspect:
            check_letters(reader.label, rid, seq)
        yield Record(rid, description, seq)


def check_letters(label: str, rid: str, seq: str) -> None:
    raw = seq.encode("utf-8")
    if not raw.translate(None, _VALID):
        return
    bad = next(ch for ch in seq if ch not in _VALID_CHARS)
    core = len(raw) - len(raw.translate(None, _NUCLEOTIDE_CORE))
    # Protein sequences are mostly letters other than A/C/G/T/N; DNA with a stray typo is not.
    if bad in _AMINO_ONLY and core < 0.5 * len(seq):
        raise InputError(f"{label}: looks like protein sequences, expected DNA "
                         f"(record {rid!r} contains amino-acid letter {bad!r})")
    raise InputError(f"{label}: record {rid!r} contains {bad!r} at position {seq.index(bad) + 1}, "
                     "which is not a nucleotide or IUPAC letter")


def write_fasta(path, items: Iterable[tuple[str, str]], width: int = 60) -> None:
    """Writes (id, seq) pairs; width 0 or None writes each sequence on one line."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        write_records(out, items, width)


def write_records(out, items: Iterable[tuple[str, str]], width: int = 60) -> None:
    """write_fasta into an open text file."""
    lines = (_LINE if width == 60 else re.compile(f".{{1,{width}}}", re.S)) if width else None
    for rid, seq in items:
        if lines:
            seq = "\n".join(lines.findall(seq))
        out.write(f">{rid}\n{seq}\n")


_LINE = re.compile(".{1,60}", re.S)  # a regex cuts lines about twice as fast as slicing in a loop
