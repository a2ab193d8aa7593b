"""FASTA reading with up-front validation, and plain FASTA writing.

Every problem is reported as one `InputError` line that starts with the file path, so
a bad input fails before any model loads.  Record ids follow Biopython's `SeqIO`
(first word of the header), because the original program's chunk ids are built on them.
"""
from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from virnucpro.errors import InputError

# IUPAC nucleotide codes (U included: RNA input is nucleotide input too).
NUCLEOTIDE_LETTERS = "ACGTURYSWKMBDHVN"
_VALID_CHARS = frozenset(NUCLEOTIDE_LETTERS + NUCLEOTIDE_LETTERS.lower())
_VALID = "".join(sorted(_VALID_CHARS)).encode()
# Letters that occur in proteins but are no nucleotide code.
_AMINO_ONLY = set("EFIJLOPQXZ*efijlopqxz")
_NUCLEOTIDE_CORE = b"ACGTUNacgtun"

_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_COMPRESSION = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip", b"\x28\xb5\x2f\xfd": "zstd"}
# Tab, LF and CR are the only control bytes a text FASTA file has any reason to hold.
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Record:
    id: str           # first word of the header
    description: str  # the whole header line after '>', as Biopython's SeqRecord.description
    seq: str          # line breaks removed, case preserved


def read_fasta(path) -> tuple[list[Record], list[tuple[str, str]]]:
    """Returns (records, skipped); skipped holds (record id, reason) for records left out."""
    path = Path(path)
    text = _decode(path, _read_bytes(path))
    start = len(text) - len(text.lstrip())
    if start == len(text):
        raise InputError(f"{path}: the file is empty")
    if text[start] == "@":
        raise InputError(f"{path}: looks like FASTQ (starts with '@'), expected FASTA")
    if text[start] != ">":
        line = text.count("\n", 0, start) + 1
        raise InputError(f"{path}: line {line}: text before the first '>' header; is this a FASTA file?")

    records, skipped, seen = [], [], {}
    # Splitting on "\n>" finds every header in one C-level pass, which keeps a genome well under a second.
    for number, block in enumerate(text[start + 1:].split("\n>"), start=1):
        header, _, body = block.partition("\n")
        description = header.strip()
        rid = description.split(None, 1)[0] if description else ""
        if not rid:
            raise InputError(f"{path}: record #{number} has an empty header (no id)")
        if rid in seen:
            raise InputError(f"{path}: duplicate record id {rid!r} (records #{seen[rid]} and #{number})")
        seen[rid] = number
        seq = body.replace("\n", "")
        if " " in seq or "\t" in seq:
            seq = seq.replace(" ", "").replace("\t", "")
        if not seq:
            skipped.append((rid, "empty sequence"))
            continue
        _check_letters(path, rid, seq)
        records.append(Record(rid, description, seq))
    return records, skipped


def write_fasta(path, items: Iterable[tuple[str, str]], width: int = 60) -> None:
    """Writes (id, seq) pairs; width 0 or None writes each sequence on one line."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for rid, seq in items:
            if width:
                seq = "\n".join(seq[i:i + width] for i in range(0, len(seq), width))
            out.write(f">{rid}\n{seq}\n")


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a FASTA file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{path}: corrupt or truncated gzip data ({_one_line(e)})") from None
    for magic, name in _OTHER_COMPRESSION.items():
        if data.startswith(magic):
            raise InputError(f"{path}: is {name}-compressed; only plain or gzip FASTA is read")
    return data


def _decode(path: Path, data: bytes) -> str:
    hit = _BINARY.search(data)
    if hit:
        raise InputError(f"{path}: binary data (control byte 0x{hit.group()[0]:02x} at offset {hit.start()}), "
                         "expected a FASTA text file")
    try:
        text = data.decode("utf-8-sig")  # -sig: a byte-order mark is not text before the first '>'
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: binary data (not UTF-8 text at offset {e.start}), "
                         "expected a FASTA text file") from None
    # Old Mac files end lines with a bare CR; treat every line ending alike.
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _check_letters(path: Path, rid: str, seq: str) -> None:
    raw = seq.encode("utf-8")
    if not raw.translate(None, _VALID):
        return
    bad = next(ch for ch in seq if ch not in _VALID_CHARS)
    core = len(raw) - len(raw.translate(None, _NUCLEOTIDE_CORE))
    # Protein sequences are mostly letters other than A/C/G/T/N; DNA with a stray typo is not.
    if bad in _AMINO_ONLY and core < 0.5 * len(seq):
        raise InputError(f"{path}: looks like protein sequences, expected DNA "
                         f"(record {rid!r} contains amino-acid letter {bad!r})")
    raise InputError(f"{path}: record {rid!r} contains {bad!r} at position {seq.index(bad) + 1}, "
                     "which is not a nucleotide or IUPAC letter")


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__
