"""The command line's arguments: `build_parser` for `virnucpro orfs` and `virnucpro predict`."""
from __future__ import annotations

import argparse

from virnucpro import __version__
from virnucpro.errors import EXIT_INPUT

EPILOG = """\
examples:
  virnucpro orfs genome.fna -l 500 -o orfs/
  virnucpro predict genome.fna -l 500 -o results/ --classifier 500_model.pth \\
      --dnabert /models/DNABERT-S --esm ~/.cache/torch/hub/checkpoints/esm2_t36_3B_UR50D.pt
  virnucpro predict examples/sample.fna -l 300 -o out/ --random-weights --preset tiny --device cpu
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit code 2, like every other error of the program."""

    def error(self, message):
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_range(low: int, high: int):
    """An argparse type: a whole number in low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value
    return parse


# torch's generators take seeds of 64 bits; the token budget and range size are counts no run nears.
SEED = _int_range(0, 2**64 - 1)
COUNT = _int_range(1, 2**31 - 1)
WORKERS = _int_range(1, 256)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="virnucpro",
        description="Identify viral sequences in DNA with DNABERT-S + ESM-2 embeddings and the VirNucPro classifier.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"virnucpro {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    o = sub.add_parser("orfs", help="chunk sequences and write their stop-free frames (no models)",
                       description="Split every sequence into overlapping chunks of exactly L bp and write each "
                                   "stop-free frame of the six-frame translation, as the original VirNucPro does.")
    o.add_argument("input", help="FASTA file (plain or gzip; a pipe, or - for stdin)")
    o.add_argument("-l", "--chunk-length", type=int, choices=(300, 500), required=True, help="chunk length in bp")
    o.add_argument("-o", "--out", required=True, help="output folder: chunks.fa, orfs.fna, orfs.faa")
    o.add_argument("--force", action="store_true", help="write into an existing non-empty folder")

    q = sub.add_parser("predict", help="classify chunks of DNA sequences as viral or not",
                       description="Chunk, translate, embed (DNABERT-S + ESM-2) and classify. Writes, per input, "
                                   "OUT/<input stem>/ with prediction_results.txt, prediction_results_highestscore.csv, "
                                   "contig_summary.tsv, skipped.tsv and run.json.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("inputs", nargs="+", metavar="INPUT", help="FASTA files (plain or gzip)")
    q.add_argument("-l", "--chunk-length", type=int, choices=(300, 500), required=True,
                   help="chunk length in bp; use the classifier trained for it (300_model.pth / 500_model.pth)")
    q.add_argument("-o", "--out", required=True, help="output folder (one subfolder per input)")
    q.add_argument("--classifier", metavar="PATH", help="trained classifier: original .pth or virnucpro .safetensors")
    q.add_argument("--dnabert", metavar="SRC", default="zhihan1996/DNABERT-S",
                   help="DNABERT-S: HF snapshot folder, a name looked up in the HF cache, or random:<preset> "
                        "(default: %(default)s)")
    q.add_argument("--esm", metavar="SRC", default="esm2_t36_3B_UR50D",
                   help="ESM-2: fair-esm .pt file, HF snapshot folder, a name looked up in the torch-hub and HF "
                        "caches, or random:<preset> (default: %(default)s)")
    q.add_argument("--random-weights", action="store_true",
                   help="use seeded random weights of --preset shapes for all models (for testing and "
                        "benchmarking; outputs are marked as such)")
    q.add_argument("--preset", choices=("tiny", "full"), default="full",
                   help="model shapes for --random-weights: full = DNABERT-S + ESM-2 3B, tiny = small CPU shapes")
    q.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda when available")
    q.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto = bf16 on cuda, fp32 on cpu")
    q.add_argument("--batch-tokens", type=COUNT, metavar="N",
                   help="token budget per forward step (default: sized from free GPU memory, 16384 on CPU)")
    q.add_argument("--keep-intermediate", action="store_true",
                   help="also write chunks, ORFs and the 3328-d features under OUT/<stem>/intermediate/")
    q.add_argument("--force", action="store_true",
                   help="write into an existing non-empty output folder (discards the checkpoints of an earlier run)")
    q.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out (same inputs and options): finished ranges are "
                        "kept, the rest is computed; starts a new run when --out holds none")
    q.add_argument("--checkpoint-every", type=COUNT, default=8192, metavar="N",
                   help="save progress at least every N chunks per process (default: %(default)s)")
    q.add_argument("--no-progress", action="store_true", help="no progress bars, only the summary")
    q.add_argument("--seed", type=SEED, default=0, help="seed for random weights, 0..2**64-1 (default: 0)")
    q.add_argument("--gpus", metavar="SPEC",
                   help="one process per GPU (with one GPU, this process): 'all', a count N (the first N), "
                        "or a list such as 0,2,5")
    q.add_argument("--cpu-workers", type=WORKERS, metavar="N",
                   help="run N CPU processes the way --gpus runs GPU processes (for testing the multi-process path)")
    q.add_argument("--engine", choices=("fast", "reference"), default="fast",
                   help="reference = the original recipe (fp32, DNABERT-S one sequence per forward, ESM-2 "
                        "batches of 2048 tokens), kept as the baseline for speed comparisons")
    q.add_argument("--compile", action="store_true",
                   help="torch.compile the ESM-2 layers (fuses the small kernels; pays a one-off compile)")
    q.add_argument("--no-persistent-models", action="store_true",
                   help="reload the models for every input file (a measured baseline; slower)")
    return p
