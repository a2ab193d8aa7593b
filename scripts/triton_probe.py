#!/usr/bin/env python3
"""DNABERT-S attention: FlexAttention (torch.compile) against the Triton kernel (alibi_triton.py), in one run.

1. check: the kernel against naive per-sequence attention at full size (12 heads of 64, ORF packings),
   bf16 and fp32, with flex's error beside it; fused_triton's add+LayerNorm and GEGLU against eager.
2. sweep: attention alone on one ~100k-token batch, flex against the kernel at several tile shapes.
3. runs: one fresh process per variant (VIRNUCPRO_DNA_ATTENTION=flex / triton), first with empty
   Inductor and Triton caches (a fresh node), then again with the caches it left (warm): seconds from
   process start to the first batch done, the second batch (a new size), Dynamo graphs compiled, and
   the DNABERT-S stage (`random:full`, bf16, ORF-like sequences of 100-500 bp) in tokens/s and MFU
   against the bf16 matmul peak measured here, as scripts/gpu_report.py counts them.
Writes triton_probe.json to --out (a folder, or a path ending in .json; default $OUT).
--dry-run: CPU, tiny preset, Triton's interpreter: checks this script, measures nothing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.time()
ROOT = Path(__file__).resolve().parents[1]
GENOME = ROOT / "tests" / "data" / "KK037166.fna"
DEFAULT_TILES = None  # alibi_triton's own
SWEEP_TILES = [(64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 4, 2), (128, 64, 8, 2), (64, 32, 4, 2),
               (32, 64, 4, 2), (32, 32, 4, 2), (128, 32, 4, 2), (64, 128, 4, 2)]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def orf_like(n: int, seed: int = 0) -> list[str]:
    """n windows of 100-500 bp (whole codons) of a real genome, either strand: DNA whose BPE token
    counts are those of real ORFs."""
    import numpy as np

    genome = "".join(line.strip() for line in GENOME.read_text().splitlines() if not line.startswith(">"))
    rc = genome[::-1].translate(str.maketrans("ACGTN", "TGCAN"))
    rng = np.random.default_rng(seed)
    lengths = rng.integers(34, 167, size=n) * 3
    starts = rng.integers(0, len(genome) - 501, size=n)
    return [(rc if k % 2 else genome)[s:s + int(m)] for k, (s, m) in enumerate(zip(starts, lengths))]



def set_tiles(tiles):
    if tiles:
        from virnucpro.models import alibi_triton
        alibi_triton.BLOCK_M, alibi_triton.BLOCK_N, alibi_triton.NUM_WARPS, alibi_triton.NUM_STAGES = tiles


# ------------------------------------------------------------------ one run, in its own process

def child(args) -> None:
    import torch

    from virnucpro import embed, perf
    t_imports = time.time() - args.t0
    dev = torch.device("cpu" if args.dry_run else "cuda")
    set_tiles(tuple(args.tiles) if args.tiles else None)
    seqs = orf_like(args.orfs)
    first, second = seqs[: args.first], seqs[args.first: 3 * args.first]
    dna = embed.load_dna_model("random:tiny" if args.dry_run else "random:full", dev,
                               "fp32" if args.dry_run else "bf16", seed=0)
    t_loaded = time.time() - args.t0

    def timed(batch):
        t = time.perf_counter()
        out = dna.embed(batch)  # back on the CPU: synchronised
        return out, time.perf_counter() - t

    emb, first_s = timed(first)
    d = {"backend": os.environ.get("VIRNUCPRO_DNA_ATTENTION"), "tiles": args.tiles,
         "seconds_imports": t_imports, "seconds_loaded": t_loaded, "seconds_to_first_batch": time.time() - args.t0,
         "first_batch": {"orfs": len(first), "seconds": first_s, "dynamo_graphs": perf.compiled_graphs()}}
    _, second_s = timed(second)
    d["second_batch"] = {"orfs": len(second), "seconds": second_s, "dynamo_graphs": perf.compiled_graphs()}
    perf.warm_up(dna, seqs)
    graphs = perf.compiled_graphs()
    stage = perf.run_embed_stage("dnabert", dna, seqs).as_dict(args.peak or None)
    stage["dynamo_graphs_in_clock"] = perf.compiled_graphs() - graphs
    d.update(stage=stage, dynamo_graphs_total=perf.compiled_graphs(), batch_tokens=dna.batch_tokens)
    torch.save(emb, args.child_out + ".pt")
    Path(args.child_out).write_text(json.dumps(d, indent=2))


def run_child(args, backend: str, caches: Path, tiles=None) -> dict:
    caches.mkdir(parents=True, exist_ok=True)
    out = tempfile.mktemp(prefix=f"probe-{backend}-", suffix=".json")
    env = {**os.environ, "VIRNUCPRO_DNA_ATTENTION": backend, "PYTHONPATH": str(ROOT),
           "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"), "TRITON_CACHE_DIR": str(caches / "triton")}
    cmd = [sys.executable, __file__, "--child-out", out, "--orfs", str(args.orfs), "--first", str(args.first),
           "--peak", str(args.peak or 0), "--t0", repr(time.time())]
    cmd += ["--dry-run"] * args.dry_run + (["--tiles", *map(str, tiles)] if tiles else [])
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        return {"backend": backend, "error": f"exit {p.returncode}: {p.stderr[-1500:]}"}
    d = json.loads(Path(out).read_text())
    d["embeddings_file"] = out + ".pt"
    return d


# ------------------------------------------------------------------ in this process

def naive(q, k, v, cu, slopes):
    import torch
    out = []
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        qs, ks, vs = (x[a:b].float().transpose(0, 1) for x in (q, k, v))
        i = torch.arange(b - a, device=q.device)
        s = qs @ ks.transpose(1, 2) / q.shape[-1] ** 0.5 - slopes[:, None, None] * (i[:, None] - i).abs()
        out.append((s.softmax(-1) @ vs).transpose(0, 1))
    return torch.cat(out)


def packed_qkv(dev, dtype, lengths, heads, dim, seed=0):
    import torch
    g = torch.Generator(device=dev).manual_seed(seed)
    qkv = torch.randn(sum(lengths), 3, heads, dim, device=dev, generator=g).to(dtype)
    cu = torch.tensor([0] + list(lengths), device=dev).cumsum(0).to(torch.int32)
    return (*qkv.unbind(1), cu)


def check(dev, token_lengths, heads, dim, hidden, ffn) -> dict:
    import torch
    import torch.nn.functional as F

    from virnucpro.models import alibi, alibi_triton, fused_triton
    slopes = alibi.alibi_slopes(heads, device=dev)
    d = {}
    for dtype in (torch.float32, torch.bfloat16):
        q, k, v, cu = packed_qkv(dev, dtype, token_lengths, heads, dim)
        want = naive(q, k, v, cu, slopes)
        name = str(dtype).removeprefix("torch.")
        got = alibi_triton.packed_alibi_attention(q, k, v, cu, slopes).float()
        row = {"tokens": int(cu[-1]), "triton_max_abs_error": float((got - want).abs().max())}
        if dev.type == "cuda":
            flex = alibi.packed_alibi_attention(q, k, v, cu, max(token_lengths), slopes, backend="flex").float()
            row["flex_max_abs_error"] = float((flex - want).abs().max())
        d[f"attention_{name}"] = row
        g = torch.Generator(device=dev).manual_seed(1)
        rows = 4096 if dev.type == "cuda" else 64
        x, y = (torch.randn(rows, hidden, device=dev, generator=g).to(dtype) for _ in range(2))
        w, b = (torch.randn(hidden, device=dev, generator=g).to(dtype) for _ in range(2))
        h = torch.randn(rows, 2 * ffn, device=dev, generator=g).to(dtype)
        ln = F.layer_norm(x.float() + y.float(), (hidden,), w.float(), b.float(), 1e-12)
        gate, value = h.float().chunk(2, dim=-1)
        d[f"add_norm_{name}_max_abs_error"] = float((fused_triton.add_norm(x, y, w, b, 1e-12).float() - ln).abs().max())
        d[f"geglu_{name}_max_abs_error"] = float((fused_triton.geglu(h).float() - F.gelu(gate) * value).abs().max())
    log(f"check: {json.dumps(d)}")
    return d


def sweep(dev, token_lengths, heads, dim) -> dict:
    """Milliseconds per attention call (one layer) on one batch, flex and the kernel's tile shapes."""
    import torch

    from virnucpro.models import alibi, alibi_triton
    q, k, v, cu = packed_qkv(dev, torch.bfloat16 if dev.type == "cuda" else torch.float32, token_lengths, heads, dim)
    slopes = alibi.alibi_slopes(heads, device=dev)
    layout = alibi.PackedLayout(cu, max(token_lengths), q.shape[0])
    cu32, seq = layout.triton_index
    if dev.type == "cuda":
        from triton.testing import do_bench
    else:
        def do_bench(fn):
            t = time.perf_counter()
            fn()
            return (time.perf_counter() - t) * 1e3
    d = {"tokens": int(cu[-1]), "ms": {}}
    if dev.type == "cuda":
        d["ms"]["flex"] = do_bench(lambda: alibi.packed_alibi_attention(q, k, v, cu, 0, slopes, layout=layout, backend="flex"))
    names = {}
    for tiles in SWEEP_TILES if dev.type == "cuda" else SWEEP_TILES[:2]:
        bm, bn, w, s = tiles
        name = "triton_%dx%d_w%d_s%d" % tiles
        names[name] = tiles
        try:
            d["ms"][name] = do_bench(lambda: alibi_triton.packed_alibi_attention(
                q, k, v, cu32, slopes, seq, block_m=bm, block_n=bn, num_warps=w, num_stages=s))
        except Exception as e:  # a tile shape that does not fit this GPU's shared memory
            d["ms"][name] = f"{type(e).__name__}: {str(e)[:200]}"
    best = min((n for n in names if isinstance(d["ms"][n], float)), key=d["ms"].get)
    d["best"], d["best_tiles"] = best, list(names[best])
    log(f"sweep: {json.dumps(d)}")
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for triton_probe.json, or a .json path")
    ap.add_argument("--orfs", type=int, default=40000, help="ORF-like sequences in the timed DNABERT-S stage (about 76 tokens each)")
    ap.add_argument("--first", type=int, default=1000, help="sequences in the first batch (the second has twice as many)")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--peak", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--tiles", type=int, nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported, here and in the runs
        args.orfs, args.first = min(args.orfs, 4), min(args.first, 1)
    sys.path.insert(0, str(ROOT))
    if args.child_out:
        child(args)
        return 0

    import torch
    if not args.dry_run and not torch.cuda.is_available():
        log("triton_probe needs a CUDA GPU (or --dry-run)")
        return 2
    try:
        import triton
    except ImportError as e:
        log(f"triton_probe needs triton ({e})")
        return 2
    from virnucpro import perf
    from virnucpro.models import dnabert, dnabert_load
    from virnucpro.outputs import package_commit
    from virnucpro.presets import PRESETS

    dev = torch.device("cpu" if args.dry_run else "cuda")
    cfg = PRESETS["tiny" if args.dry_run else "full"]["dnabert"]
    heads, dim = cfg["num_heads"], cfg["hidden_size"] // cfg["num_heads"]
    out = Path(args.out)
    out = out if out.suffix == ".json" else out / "triton_probe.json"
    report = {"commit": package_commit(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "none (dry run)",
              "torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version(),
              "host": platform.node(), "preset": "tiny" if args.dry_run else "full"}
    args.peak = perf.measure_peak_flops(dev) if dev.type == "cuda" else 0
    report["peak_bf16_flops"] = args.peak or None

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")

    _, tok, _ = dnabert_load.load_dnabert("random:tiny")
    lengths = [len(t) for t in dnabert.tokenize(tok, orf_like(300 if not args.dry_run else 6, seed=1))]
    report["check"] = check(dev, lengths, heads, dim, cfg["hidden_size"], cfg["intermediate_size"])
    save()
    many = [len(t) for t in dnabert.tokenize(tok, orf_like(2000 if not args.dry_run else 4, seed=2))]
    report["sweep"] = sweep(dev, many, heads, dim)
    save()
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    runs = {}
    with tempfile.TemporaryDirectory(prefix="triton-probe-") as tmp:
        best = tuple(report["sweep"]["best_tiles"])
        plan = [("flex", "cold", None), ("flex", "warm", None), ("triton", "cold", None), ("triton", "warm", None)]
        plan += [("triton", "warm_best_tiles", best)]
        for backend, caches, tiles in plan:
            key = f"{backend}_{caches}"
            log(f"run {key} ...")
            runs[key] = run_child(args, backend, Path(tmp) / backend, tiles)
            log(f"{key}: {json.dumps({k: v for k, v in runs[key].items() if k != 'stage'})[:600]}")
            report["runs"] = runs
            save()
        embs = {k: torch.load(r["embeddings_file"]) for k, r in runs.items() if "embeddings_file" in r}
        if "flex_warm" in embs and "triton_warm" in embs:
            a, b = embs["flex_warm"].double(), embs["triton_warm"].double()
            report["first_batch_flex_vs_triton"] = {
                "min_cosine": float(torch.nn.functional.cosine_similarity(a, b).min()),
                "max_abs_diff": float((a - b).abs().max())}
    for r in runs.values():
        r.pop("embeddings_file", None)
    report["seconds_total"] = time.time() - T_START
    save()
    print(table(report))
    log(f"wrote {out}")
    return 0


def table(r: dict) -> str:
    rows = []
    for name, row in r["check"].items():
        rows.append((f"check {name}", json.dumps(row)))
    rows.append(("sweep (ms per layer)", ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} failed"
                                                  for k, v in r["sweep"]["ms"].items())))
    for key, d in r.get("runs", {}).items():
        if "error" in d:
            rows.append((key, d["error"].splitlines()[-1] if d["error"] else "failed"))
            continue
        s = d["stage"]
        mfu = f", MFU {s['mfu']:.1%}" if "mfu" in s else ""
        rows.append((key, f"first batch at {d['seconds_to_first_batch']:.2f} s from start (imports "
                          f"{d['seconds_imports']:.2f}, loaded {d['seconds_loaded']:.2f}, step {d['first_batch']['seconds']:.2f}); "
                          f"second {d['second_batch']['seconds']:.2f} s; {s['tokens_per_second']:.0f} tok/s{mfu}; "
                          f"Dynamo graphs {d['dynamo_graphs_total']}"))
    if "first_batch_flex_vs_triton" in r:
        rows.append(("flex vs triton, first batch", json.dumps(r["first_batch_flex_vs_triton"])))
    w = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)


if __name__ == "__main__":
    raise SystemExit(main())
