"""Whatever bytes a user hands over, read_fasta either returns clean records or raises InputError,
and where the stream's blocks happen to end never changes what is read."""
import gzip
import tempfile
from pathlib import Path

from hypothesis import given, settings, strategies as st

from virnucpro.errors import InputError
from virnucpro import fasta
from virnucpro.fasta import NUCLEOTIDE_LETTERS, FastaReader, read_fasta

VALID = set(NUCLEOTIDE_LETTERS + NUCLEOTIDE_LETTERS.lower())

# Random bytes rarely get past the first check, so also build near-FASTA files: records
# of mostly valid pieces, with the parser's corner cases (odd headers, line endings,
# blank lines, amino acids, junk) mixed in.
EOL = st.sampled_from(["\n", "\r\n", "\r"])
HEADER = st.sampled_from([">a", ">b x y", ">a\t", ">c", ">dd", "> e", ">", "> ", ">\u00e9"])
PIECE = st.sampled_from(["ACGT"] * 4 + ["acgtn", "RYKMSWBDHVN", "U", "", " ", "\t",
                                        "MKLEPQF*", "-", ".", "@", ">", "\x00", "\u00e9", "1"])
LINE = st.lists(PIECE, max_size=4).map("".join)
RECORD = st.tuples(HEADER, st.lists(LINE, max_size=3))
NEAR_FASTA = st.tuples(st.sampled_from([""] * 6 + ["\ufeff", "\n", "@", "x\n"]), st.lists(RECORD, max_size=5),
                       EOL).map(lambda t: (t[0] + t[2].join(h + t[2] + t[2].join(ls) for h, ls in t[1]))
                                .encode("utf-8"))


def check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.fa"
        path.write_bytes(data)
        try:
            records, skipped = read_fasta(path)
        except InputError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            return
    ids = [r.id for r in records] + [rid for rid, _ in skipped]
    assert len(ids) == len(set(ids))
    for r in records:
        assert r.id and not any(c.isspace() for c in r.id)
        assert r.seq and set(r.seq) <= VALID - {"U", "u"}
    for rid, reason in skipped:
        assert rid and reason == "empty sequence"


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), NEAR_FASTA, NEAR_FASTA.map(gzip.compress),
                 st.binary(max_size=100).map(lambda b: gzip.compress(b)[: max(2, len(b) // 3)])))
def test_read_fasta_raises_only_input_error(data):
    check(data)


def outcome(data: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.fa"
        path.write_bytes(data)
        reader = FastaReader(path)
        try:
            return list(reader), reader.skipped, reader.rna_bases, reader.sha256
        except InputError:
            return "error"


@settings(max_examples=200, deadline=None)
@given(st.one_of(NEAR_FASTA, NEAR_FASTA.map(gzip.compress), NEAR_FASTA.map(lambda b: b"\xef\xbb\xbf" + b)),
       st.integers(1, 7))
def test_block_boundaries_do_not_change_what_is_read(data, block):
    whole = outcome(data)
    default, fasta._BLOCK = fasta._BLOCK, block  # blocks of a few bytes cut every line, CRLF, character and header
    try:
        cut = outcome(data)
    finally:
        fasta._BLOCK = default
    assert cut == whole  # (which problem an error names first may differ)
