"""Where model loading's time goes in a fresh process, as in a `predict` worker: CUDA's
context, then load_dna_model and load_protein_model (random `full` weights), each
synchronised, with a cProfile of the DNABERT-S load.  Run on a GPU host from the repository root:

    python3 scripts/load_probe.py [--preset full] [--out DIR]

With --files DIR the weights are read from files in the published formats, written into DIR
once (virnucpro.models.weightfiles: a 5.6 GB fair-esm .pt at full size): the ESM-2 .pt is read
through the page cache first, then loaded twice, then (--verify) loaded once more by a direct
per-tensor copy and compared bit for bit with the staged load:

    python3 scripts/load_probe.py --files ~/.cache/virnucpro-bench/models --verify
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
    ap.add_argument("--files", metavar="DIR", help="read weights from files written (once) into DIR")
    ap.add_argument("--verify", action="store_true", help="with --files: compare with a direct-copy load")
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
    dna_src = esm_src = f"random:{args.preset}"
    if args.files:
        from virnucpro.models import weightfiles

        files = mark("write model files (once)", lambda: weightfiles.model_files(args.files, args.preset))
        dna_src, esm_src = str(files["dnabert"]), str(files["esm"])
        mark("read the ESM-2 .pt once (page cache)", lambda: _read_all(files["esm"]))
    dna = mark("load_dna_model", lambda: prof.runcall(embed.load_dna_model, dna_src, "cuda", "bf16"))
    protein = mark("load_protein_model", lambda: embed.load_protein_model(esm_src, "cuda", "bf16"))
    mark("load_protein_model again", lambda: embed.load_protein_model(esm_src, "cuda", "bf16"))
    mark("load_dna_model again", lambda: embed.load_dna_model(dna_src, "cuda", "bf16"))
    verified = None
    if args.files and args.verify:
        verified = mark("direct-copy load and bitwise compare", lambda: _same_as_direct(protein.model, esm_src))
        print(f"staged load bit-identical to a direct copy: {verified}")
    mark("DNABERT-S first embed (10 ORFs)", lambda: dna.embed(["ATGAAACGCATTAGCACC" * 10] * 10))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
    for k, v in marks.items():
        print(f"{v:8.3f} s  {k}")
    print(buf.getvalue())
    os.makedirs(args.out, exist_ok=True)
    env = {k: os.environ.get(k) for k in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")}
    with open(os.path.join(args.out, "load_probe.json"), "w") as f:
        json.dump({"seconds": marks, "files": args.files, "bit_identical": verified, "torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "env": env,
                   "dont_write_bytecode": sys.flags.dont_write_bytecode}, f, indent=1)
    return 0 if verified in (None, True) else 1


def _read_all(path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 26):
            n += len(chunk)
    return n


def _same_as_direct(model, source: str) -> bool:
    from virnucpro.models import esm2_load

    def direct(pairs, device):
        for dst, src in pairs:
            dst.copy_(src)

    staged, esm2_load.staged_copy = esm2_load.staged_copy, direct
    try:
        other, _ = esm2_load.load_esm2(source, device="cuda", dtype=torch.bfloat16)
    finally:
        esm2_load.staged_copy = staged
    want = other.state_dict()
    return all(torch.equal(v.view(-1).view(torch.uint8), want[k].view(-1).view(torch.uint8))
               for k, v in model.state_dict().items())


if __name__ == "__main__":
    sys.exit(main())
