"""Where model loading's time goes in a fresh process, as in a `predict` worker: CUDA's
context, then load_dna_model and load_protein_model (random `full` weights), each
synchronised, with a cProfile of the DNABERT-S load.  Run on a GPU host from the repository root:

    python3 scripts/load_probe.py [--preset full] [--out DIR]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time

T0 = time.perf_counter()
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="full")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("load_probe: no CUDA GPU", file=sys.stderr)
        return 2
    marks = {"import torch": time.perf_counter() - T0}

    def mark(name, fn):
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        marks[name] = time.perf_counter() - t
        return out

    t = time.perf_counter()
    from virnucpro import embed

    marks["import virnucpro.embed"] = time.perf_counter() - t
    mark("CUDA context (first tensor)", lambda: torch.zeros(1, device="cuda"))
    prof = cProfile.Profile()
    src = f"random:{args.preset}"
    dna = mark("load_dna_model", lambda: prof.runcall(embed.load_dna_model, src, "cuda", "bf16"))
    mark("load_protein_model", lambda: embed.load_protein_model(src, "cuda", "bf16"))
    mark("load_dna_model again", lambda: embed.load_dna_model(src, "cuda", "bf16"))
    mark("DNABERT-S first embed (10 ORFs)", lambda: dna.embed(["ATGAAACGCATTAGCACC" * 10] * 10))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
    for k, v in marks.items():
        print(f"{v:8.3f} s  {k}")
    print(buf.getvalue())
    os.makedirs(args.out, exist_ok=True)
    env = {k: os.environ.get(k) for k in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")}
    with open(os.path.join(args.out, "load_probe.json"), "w") as f:
        json.dump({"seconds": marks, "torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "env": env,
                   "dont_write_bytecode": sys.flags.dont_write_bytecode}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
