"""FASTA reading as one validating stream, and plain FASTA writing.

`FastaReader` reads its input once, block by block, so that pipes, process substitution
and `-` (stdin) work and memory follows the largest record rather than the file.  The
SHA-256 of the raw bytes (before gunzip) is taken on the way.  Every problem is one
`InputError` line that starts with the file's name, raised at the first block or record
where it shows.  Record ids follow Biopython's `SeqIO` (first word of the header), because
the original program's chunk ids are built on them.  RNA is read as DNA: U/u become T/t
(and are counted), so either alphabet gives the same chunks, ORFs and scores.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
import zlib
from contextlib import nullcontext
from itertools import chain
from pathlib import Path
from typing import Iterator

from virnucpro.errors import InputError
from virnucpro.fasta_records import (NUCLEOTIDE_LETTERS, Record, RecordParser, write_fasta,  # noqa: F401
                                     write_records)


_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_COMPRESSION = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip", b"\x28\xb5\x2f\xfd": "zstd"}
# Tab, LF and CR are the only control bytes a text FASTA file has any reason to hold.
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TEXT_BYTES = bytes(b for b in range(256) if not _BINARY.match(bytes([b])))
_BOM = b"\xef\xbb\xbf"

_BLOCK = 1 << 20
# A FASTA file shows what it is at once; anything else is refused before it is read further.
_SNIFF = 1 << 16


class FastaReader:
    """One pass over a FASTA file (plain or gzip; "-" = stdin), yielding validated records.

    After the iteration has ended: `sha256` (hex digest of the raw bytes), `skipped`
    ((record id, "empty sequence") for records left out) and `rna_bases` (U/u read as T/t).
    A reader can be iterated once."""

    def __init__(self, path: str | Path, copy_to=None):
        self.name = str(path)
        self.copy_to = copy_to  # a binary file that gets every raw byte read
        self.label = "<stdin>" if self.name == "-" else self.name  # what messages start with
        self.sha256: str | None = None
        self.skipped: list[tuple[str, str]] = []
        self.rna_bases = 0
        self._started = False

    def __iter__(self) -> Iterator[Record]:
        if self._started:
            raise RuntimeError(f"{self.label}: a FastaReader reads its input once")
        self._started = True
        digest = hashlib.sha256()
        with self._open() as raw:
            blocks = self._raw_blocks(raw, digest)
            yield from self._records(self._text(self._unpacked(blocks)))
            for _ in blocks:  # bytes after the end of gzip data still belong to the file's digest
                pass
        self.sha256 = digest.hexdigest()

    def _error(self, message: str) -> InputError:
        return InputError(f"{self.label}: {message}")

    def _open(self):
        if self.name == "-":
            try:
                mode = os.fstat(sys.stdin.fileno()).st_mode
            except (AttributeError, ValueError, OSError):  # closed, or replaced by an object without a file
                raise self._error("standard input cannot be read") from None
            if stat.S_ISCHR(mode):
                raise self._error("standard input is a terminal or device; pipe a FASTA file into it")
            return nullcontext(sys.stdin.buffer)
        try:
            mode = os.stat(self.name).st_mode
        except FileNotFoundError:
            raise self._error("no such file") from None
        except OSError as e:
            raise self._error(f"cannot read: {e.strerror or e}") from None
        if stat.S_ISDIR(mode):
            raise self._error("is a directory, expected a FASTA file")
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            raise self._error("is a device, expected a FASTA file")
        try:
            return open(self.name, "rb")
        except OSError as e:
            raise self._error(f"cannot read: {e.strerror or e}") from None

    def _raw_blocks(self, raw, digest) -> Iterator[bytes]:
        while True:
            try:
                block = raw.read(_BLOCK)
            except OSError as e:
                raise self._error(f"cannot read: {e.strerror or e}") from None
            if not block:
                return
            digest.update(block)
            if self.copy_to is not None:
                try:
                    self.copy_to.write(block)
                except OSError as e:
                    raise self._error(f"cannot keep a copy of it in {self.copy_to.name}: {e.strerror or e}") from None
            yield block

    def _unpacked(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        """The file's bytes, gunzipped when they start with gzip's magic (whatever the name says)."""
        head, blocks = _head(blocks, 6)
        if head.startswith(_GZIP_MAGIC):
            head, blocks = _head(self._gunzip(blocks), 6)
        for magic, kind in _OTHER_COMPRESSION.items():
            if head.startswith(magic):
                raise self._error(f"is {kind}-compressed; only plain or gzip FASTA is read")
        return blocks

    def _gunzip(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        # Members follow one another (as `cat a.gz b.gz`); zero padding after the last is allowed.
        member, fed = zlib.decompressobj(31), False
        try:
            for data in blocks:
                while data:
                    if member.eof:
                        data = data.lstrip(b"\0")
                        if not data:
                            break
                        member, fed = zlib.decompressobj(31), False
                    fed = True
                    # max_length keeps a block that inflates a thousandfold to block-sized pieces.
                    out = member.decompress(data, _BLOCK)
                    data = member.unconsumed_tail or member.unused_data
                    if out:
                        yield out
            if fed and not member.eof:
                tail = member.flush()  # output zlib held back when max_length was reached
                if tail:
                    yield tail
            if fed and not member.eof:
                raise self._error("corrupt or truncated gzip data (the compressed stream ends early)")
        except zlib.error as e:
            raise self._error(f"corrupt or truncated gzip data ({_one_line(e)})") from None

    def _text(self, blocks: Iterator[bytes]) -> Iterator[str]:
        """UTF-8 text with every line ending turned into LF; a byte-order mark is dropped."""
        offset, pending, cr, first = 0, b"", False, True  # offset: of `pending` + block in the stream
        for block in blocks:
            if block.translate(None, _TEXT_BYTES):
                hit = _BINARY.search(block)
                raise self._error(f"binary data (control byte 0x{hit.group()[0]:02x} at offset "
                                  f"{offset + len(pending) + hit.start()}), expected a FASTA text file")
            data = pending + block if pending else block
            if first:
                if len(data) < len(_BOM) and _BOM.startswith(data):
                    pending = data
                    continue
                first = False
                if data.startswith(_BOM):
                    data, offset = data[len(_BOM):], offset + len(_BOM)
            try:
                text, pending = data.decode("utf-8"), b""
            except UnicodeDecodeError as e:
                if e.end < len(data) or e.reason != "unexpected end of data":
                    raise self._error(f"binary data (not UTF-8 text at offset {offset + e.start}), "
                                      "expected a FASTA text file") from None
                text, pending = data[:e.start].decode("utf-8"), data[e.start:]  # a character cut by the block end
            offset += len(data) - len(pending)
            if cr:
                text = "\r" + text
            cr = text.endswith("\r")  # may be the first half of a CRLF
            if cr:
                text = text[:-1]
            if "\r" in text:  # old Mac files end lines with a bare CR; treat every line ending alike
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            yield text
        if pending:
            raise self._error(f"binary data (not UTF-8 text at offset {offset}), expected a FASTA text file")
        if cr:
            yield "\n"

    def _records(self, texts: Iterator[str]) -> Iterator[Record]:
        # Leading white space, then a '>' within the first 64 KiB; a header line ends within them too.
        seen, lines = 0, 1
        for text in texts:
            rest = text.lstrip()
            lines += text.count("\n", 0, len(text) - len(rest))
            seen += len(text) - len(rest)
            if rest:
                break
            if seen > _SNIFF:
                raise self._error(f"no FASTA header ('>') in the first {_SNIFF // 1024} KiB; is this a FASTA file?")
        else:
            raise self._error("the file is empty")
        if rest[0] == "@":
            raise self._error("looks like FASTQ (starts with '@'), expected FASTA")
        if rest[0] != ">":
            raise self._error(f"line {lines}: text before the first '>' header; is this a FASTA file?")

        parser = RecordParser(self, _SNIFF)
        # A header starts at every '>' that opens a line, the rule of the original's split on "\n>".
        line_start = False
        for text in chain([rest[1:]], texts):
            pos = 0
            if line_start and text.startswith(">"):
                yield from parser.finish()
                pos = 1
            first = text.find("\n>", pos)
            if first < 0:
                parser.feed(text[pos:], seen + pos)
            else:
                parser.feed(text[pos:first], seen + pos)
                yield from parser.finish()
                last = text.rfind("\n>")
                if last > first:  # records that start and end in this block: one split finds them all
                    for block in text[first + 2:last].split("\n>"):
                        header, _, body = block.partition("\n")
                        yield from parser.whole(header, body)
                parser.feed(text[last + 2:], seen + last + 2)
            line_start = text.endswith("\n") if text else line_start
            seen += len(text)
        yield from parser.finish()


def read_fasta(path) -> tuple[list[Record], list[tuple[str, str]]]:
    """Returns (records, skipped); skipped holds (record id, reason) for records left out."""
    reader = FastaReader(path)
    records = list(reader)
    return records, reader.skipped


def _head(blocks: Iterator[bytes], n: int) -> tuple[bytes, Iterator[bytes]]:
    """The first n bytes (fewer at the end of the stream), and all the blocks again."""
    head = b""
    for block in blocks:
        head += block
        if len(head) >= n:
            break
    return head, chain([head] if head else [], blocks)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__
