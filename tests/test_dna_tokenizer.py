import importlib.util

import pytest
from Bio import SeqIO
from tokenizers import Tokenizer

from conftest import DATA, REAL_DNABERT, ROOT
from virnucpro.models.dnabert_load import STAND_IN_TOKENIZER, load_tokenizer, tokenize

REAL = REAL_DNABERT / "tokenizer.json"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(STAND_IN_TOKENIZER)


def orf_sequences() -> list[str]:
    seqs = [str(r.seq) for f in sorted(DATA.glob("*_identified_nucleotide.fa")) for r in SeqIO.parse(f, "fasta")]
    assert len(seqs) > 400
    return seqs


def test_layout_matches_dnabert_s(tok):
    assert tok.get_vocab_size() == 4096
    names = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "A", "C", "G", "T"]
    assert [tok.token_to_id(n) for n in names] == list(range(9))


def test_template_and_unknowns(tok):
    enc = tok.encode("ACGTacgNACGT")
    assert enc.ids[0] == 1 and enc.ids[-1] == 2
    assert enc.tokens[1:-1].count("[UNK]") == 4  # a, c, g and N: one [UNK] each
    assert "".join(t for t in enc.tokens[1:-1] if t != "[UNK]") == "ACGTACGT"
    assert tokenize(tok, ["A", "ACGT"])[0] == [1, 5, 2]


def test_padding_and_truncation_are_off():
    raw = Tokenizer.from_file(str(STAND_IN_TOKENIZER))
    assert raw.padding is None and raw.truncation is None
    long = "ACGT" * 3000
    ids = tokenize(raw, [long, "A"])
    assert len(ids[1]) == 3 and len(ids[0]) > 2000 // 4.7


@pytest.mark.skipif(not REAL.is_file(), reason="../shared is not present")
def test_token_counts_within_5_percent_of_the_real_tokenizer(tok):
    real = load_tokenizer(REAL)
    seqs = orf_sequences()
    ours = sum(map(len, tokenize(tok, seqs))) / len(seqs)
    theirs = sum(map(len, tokenize(real, seqs))) / len(seqs)
    print(f"mean tokens per ORF: stand-in {ours:.2f}, real {theirs:.2f}, ratio {ours / theirs:.4f}")
    assert abs(ours / theirs - 1) < 0.05


def test_build_script_reproduces_the_shipped_file(tmp_path):
    spec = importlib.util.spec_from_file_location("build_dna_tokenizer", ROOT / "scripts" / "build_dna_tokenizer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pytest.importorskip("pyrodigal")
    out = tmp_path / "dna_tokenizer.json"
    script.main(["--out", str(out)])
    assert out.read_bytes() == STAND_IN_TOKENIZER.read_bytes()
