#!/usr/bin/env python3
"""ESM-2's rotary on a GPU: fused.rotary compiled by Inductor against rotary_triton.py, in one run.

1. stage: ESM-2 3B (`random:full`, bf16) embedding the same ORF proteins with each kernel in
   this process (VIRNUCPRO_ESM_ROTARY is read at every call), twice each, tokens/s and MFU
   against the bf16 matmul peak measured here; the largest difference between the embeddings.
2. runs: one fresh process per kernel, seconds from process start to the first batch done and
   Dynamo graphs compiled by then.
Writes rotary_probe.json to --out (default $OUT).  --dry-run: CPU, tiny preset, interpreter.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

T_START = time.time()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def proteins(n: int) -> list[str]:
    from virnucpro.inputs import InputData, StageClock, prepare
    from virnucpro.fasta import read_fasta

    path = ROOT / "tests" / "data" / "SRR492066.fna"
    data = prepare(InputData(path, read_fasta(path)[0], []), 500, StageClock())
    prots = [o.protein for o in data.orfs]
    return (prots * (n // len(prots) + 1))[:n]


def first_batch(args) -> None:
    """Child: load ESM-2, embed one batch, print seconds since process start and graphs."""
    import torch

    from virnucpro import embed

    dev = "cpu" if args.dry_run else "cuda"
    esm = embed.load_protein_model("random:tiny" if args.dry_run else "random:full", dev,
                                   "fp32" if args.dry_run else "bf16")
    esm.embed(proteins(200))
    if dev == "cuda":
        torch.cuda.synchronize()
    graphs = 0
    if "torch._dynamo" in sys.modules:
        from torch._dynamo.utils import counters
        graphs = int(counters["stats"]["unique_graphs"])
    print(json.dumps({"seconds_to_first_batch": time.time() - args.t0, "dynamo_graphs": graphs}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--orfs", type=int, default=4000)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, default=T_START, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        first_batch(args)
        return 0
    import torch

    from virnucpro import embed, perf

    dev = torch.device("cpu" if args.dry_run else "cuda")
    report: dict = {"gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "none (dry run)"}
    peak = perf.measure_peak_flops(dev) if dev.type == "cuda" else float("nan")
    report["peak_bf16_flops"] = peak
    esm = embed.load_protein_model("random:tiny" if args.dry_run else "random:full", dev,
                                   "fp32" if args.dry_run else "bf16")
    seqs = proteins(args.orfs)
    out = {}
    for kernel in ("inductor", "triton", "inductor", "triton"):
        os.environ["VIRNUCPRO_ESM_ROTARY"] = kernel  # settings.esm_rotary() reads it at each step
        perf.warm_up(esm, seqs[:500])
        r = perf.run_embed_stage("esm2", esm, seqs, None)
        report.setdefault(kernel, []).append(r.as_dict(peak))
        out[kernel] = esm.embed(seqs[:300])
        print(f"{kernel}: {r.tokens_per_second:.0f} tok/s, MFU {r.mfu(peak):.3f}", file=sys.stderr, flush=True)
    report["max_abs_diff"] = float((out["inductor"] - out["triton"]).abs().max())
    for kernel in ("inductor", "triton"):
        env = {**os.environ, "VIRNUCPRO_ESM_ROTARY": kernel}
        t0 = time.time()
        p = subprocess.run([sys.executable, __file__, "--child", "--t0", str(t0), *(["--dry-run"] if args.dry_run else [])],
                           env=env, capture_output=True, text=True, cwd=ROOT)
        report[f"{kernel}_fresh_process"] = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 \
            else {"rc": p.returncode, "stderr": p.stderr[-1000:]}
        print(kernel, report[f"{kernel}_fresh_process"], file=sys.stderr, flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "rotary_probe.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "peak_bf16_flops"})[:3000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
