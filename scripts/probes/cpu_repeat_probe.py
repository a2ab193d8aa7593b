"""Runs `virnucpro predict` on the CPU again and again, the input read through a pipe, and prints
each run whose features differ from the first run's: which rows, which model's columns, how much.
For the CPU flake noted in docs/RELIABILITY.md ("Determinism on the CPU"); put the host under load
(e.g. `pytest -n 2` beside it) to see it.

    python scripts/cpu_repeat_probe.py tests/data/KK037166.fna --runs 40
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def features(fasta: Path, out: Path) -> np.ndarray:
    cmd = (f"{sys.executable} -m virnucpro predict <(cat {fasta}) -l 500 --random-weights --preset tiny "
           f"--device cpu --no-progress --keep-intermediate -o {out}")
    subprocess.run(["bash", "-c", cmd], check=True, capture_output=True, cwd=ROOT)
    (path,) = out.glob("*/intermediate/features.npy")
    return np.load(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fasta", type=Path)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--dna-dim", type=int, default=96, help="DNABERT-S columns come first (tiny preset: 96)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="virnucpro-repeat-"))
    try:
        first, differing = features(args.fasta.resolve(), root / "0"), 0
        for i in range(1, args.runs):
            f = features(args.fasta.resolve(), root / str(i))
            if not np.array_equal(f, first):
                differing += 1
                rows, cols = np.flatnonzero((f != first).any(1)), np.flatnonzero((f != first).any(0))
                models = sorted({"DNABERT-S" if c < args.dna_dim else "ESM-2" for c in cols})
                print(f"run {i}: {len(rows)} rows {rows.tolist()[:12]}, {models}, max |diff| "
                      f"{np.abs(f - first).max():.3g}", flush=True)
        print(f"{differing} of {args.runs - 1} runs differ from the first")
        return 1 if differing else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
