import gzip

import pytest

from conftest import DATA
from virnucpro.errors import InputError
from virnucpro.fasta import Record, read_fasta, write_fasta


GOOD = b">seq1 first record\nACGTACGTNN\nRYKM\n>seq2\nacgtn\n"


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def error_of(path) -> str:
    with pytest.raises(InputError) as info:
        read_fasta(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name, data, expected", [
    ("empty.fa", b"", ["empty"]),
    ("blank.fa", b"\n  \r\n\n", ["empty"]),
    ("reads.fq", b"@r1\nACGT\n+\nIIII\n", ["FASTQ"]),
    ("binary.fa", bytes(range(256)) * 4, ["binary"]),
    ("latin1.fa", b">a caf\xe9\nACGT\n", ["binary", "UTF-8"]),
    ("corrupt.gz", b"\x1f\x8b" + b"not deflate data" * 4, ["gzip"]),
    ("bzip.fa.bz2", b"BZh91AY&SY\x00\x01", ["bzip2"]),
    ("protein.fa", b">p1 kinase\nMKVLAAGIVGLLLAQEPFSW\n", ["looks like protein sequences, expected DNA", "'p1'"]),
    ("badchar.fa", b">ok\nACGT\n>typo\nACGTEACGT\n", ["'typo'", "'E'", "position 5"]),
    ("gap.fa", b">aln\nAC-GT\n", ["'aln'", "'-'"]),
    ("unicode.fa", ">u\nAC\u00b5GT\n".encode(), ["'u'", "'\u00b5'"]),
    ("dup.fa", b">a\nACGT\n>b\nAC\n>a\nGG\n", ["duplicate", "'a'", "#1", "#3"]),
    ("preamble.fa", b"\n# made by hand\n>a\nACGT\n", ["before the first '>'", "line 2"]),
    ("plain_seq.txt", b"ACGTACGT\n", ["before the first '>'"]),
    ("noid.fa", b">a\nAC\n>   \nACGT\n", ["#2", "no id"]),
])
def test_bad_input_is_one_line_error_naming_file_and_problem(tmp_path, name, data, expected):
    message = error_of(write(tmp_path, name, data))
    for part in expected:
        assert part in message, message


def test_missing_path_and_directory(tmp_path):
    assert "no such file" in error_of(tmp_path / "nope.fa")
    assert "directory" in error_of(tmp_path)


def test_truncated_gzip(tmp_path):
    whole = gzip.compress(GOOD * 50)
    assert "gzip" in error_of(write(tmp_path, "cut.fa.gz", whole[: len(whole) // 2]))


def test_gzip_detected_by_magic_not_extension(tmp_path):
    plain = read_fasta(write(tmp_path, "plain.fa", GOOD))
    assert read_fasta(write(tmp_path, "packed.fa", gzip.compress(GOOD))) == plain
    assert read_fasta(write(tmp_path, "packed.gz", gzip.compress(GOOD))) == plain


def test_line_endings_do_not_matter(tmp_path):
    plain = read_fasta(write(tmp_path, "lf.fa", GOOD))
    assert read_fasta(write(tmp_path, "crlf.fa", GOOD.replace(b"\n", b"\r\n"))) == plain
    assert read_fasta(write(tmp_path, "cr.fa", GOOD.replace(b"\n", b"\r"))) == plain


def test_records_joined_case_kept_and_header_split(tmp_path):
    records, skipped = read_fasta(write(tmp_path, "a.fa", GOOD))
    assert records == [Record("seq1", "seq1 first record", "ACGTACGTNNRYKM"), Record("seq2", "seq2", "acgtn")]
    assert skipped == []


def test_empty_sequence_is_skipped_and_reported(tmp_path):
    records, skipped = read_fasta(write(tmp_path, "a.fa", b">a\n\n>b desc\nAC\n>c\n"))
    assert [r.id for r in records] == ["b"]
    assert skipped == [("a", "empty sequence"), ("c", "empty sequence")]


def test_byte_order_mark_and_blank_lines_are_tolerated(tmp_path):
    records, _ = read_fasta(write(tmp_path, "a.fa", b"\xef\xbb\xbf\n>a\nAC GT\n\nTT\n"))
    assert records == [Record("a", "a", "ACGTTT")]


def test_golden_input_reads_as_biopython_does():
    from Bio import SeqIO

    path = DATA / "edge_cases.fa"
    records, skipped = read_fasta(path)
    expected = [(r.id, r.description, str(r.seq)) for r in SeqIO.parse(path, "fasta")]
    assert [(r.id, r.description, r.seq) for r in records] == expected
    assert skipped == []
    assert any(r.seq.islower() for r in records)


@pytest.mark.parametrize("width", [60, 7, 0])
def test_write_fasta_round_trips(tmp_path, width):
    items = [("a", "ACGT" * 40), ("b", "n"), ("c", "ACGTA" * 12)]
    path = tmp_path / "out.fa"
    write_fasta(path, items, width=width)
    records, _ = read_fasta(path)
    assert [(r.id, r.seq) for r in records] == items
    longest = max(len(line) for line in path.read_text().splitlines() if not line.startswith(">"))
    assert longest == (width or 160)
