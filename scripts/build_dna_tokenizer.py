"""Regenerate virnucpro/data/dna_tokenizer.json, the stand-in for the DNABERT-S tokenizer.

`random:<preset>` models need a tokenizer with the same interface and roughly the
same token counts as the real one (so that batching and speed measurements mean
something), but the real vocabulary may not ship with this project.  So we train our
own BPE with the same special ids, the same base ids and the same template, on a
public genome: the C. diphtheriae NCTC11397 assembly that the `pyrodigal` package
ships as test data.  Training is deterministic, so running this again gives the
same file byte for byte.

    python scripts/build_dna_tokenizer.py [--out PATH]
"""
from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]  # ids 0..4, as in DNABERT-S
BASES = list("ACGT")  # ids 5..8
VOCAB_SIZE = 4096
GENOME = "GCF_001457455.1_NCTC11397_genomic.fna.gz"
# ORFs are at most a few hundred bp; training on pieces of that size keeps BPE from
# spending merges on long repeats that never fit inside one ORF.
PIECE = 500
OUT = Path(__file__).resolve().parents[1] / "virnucpro" / "data" / "dna_tokenizer.json"

_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def _genome_path() -> Path:
    import pyrodigal.tests

    return Path(pyrodigal.tests.__file__).parent / "data" / GENOME


def _read_fasta(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        text = fh.read()
    return ["".join(rec.splitlines()[1:]).upper() for rec in text.split(">")[1:]]


def training_pieces(path: Path | None = None) -> list[str]:
    """Both strands (ORFs come from both), cut at anything that is not ACGT."""
    pieces = []
    for seq in _read_fasta(path or _genome_path()):
        for run in re.split("[^ACGT]+", seq):
            for strand in (run, run.translate(_COMPLEMENT)[::-1]):
                pieces += [strand[i : i + PIECE] for i in range(0, len(strand), PIECE)]
    return pieces


def build(path: Path | None = None) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    # No normalizer: lower-case bases and N must stay unknown and become one [UNK]
    # each, as with the real tokenizer.  Whitespace pre-splitting matches it too.
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIALS, initial_alphabet=BASES,
        limit_alphabet=len(BASES), show_progress=False,
    )
    tok.train_from_iterator(training_pieces(path), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 1), ("[SEP]", 2)],
    )
    ids = [tok.token_to_id(t) for t in SPECIALS + BASES]
    if ids != list(range(9)) or tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"unexpected stand-in vocabulary layout: {ids}, size {tok.get_vocab_size()}")
    return tok


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    build().save(str(args.out), pretty=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
