#!/usr/bin/env python3
"""Measure the GPU engine against its targets in one run and print a table.

Stages alone (ESM-2 3B, DNABERT-S: tokens/s, ORFs/s, MFU against the bf16 matmul peak
measured here, NVML utilisation), end to end on the C. diphtheriae genome and on 150 bp
reads, speedup over `--engine reference`, bf16-vs-fp32 agreement, whether a batch embeds
bit-identically twice, and whether `--resume` after a kill reproduces an uninterrupted run.
Random weights, `full` preset.  Writes the figures as JSON (commit, date, GPU) for docs/perf/.
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

import numpy as np
import torch

from report import ROOT, user_view
from report.measure import (DNABERT_REPEAT, cosine_rows, empty_cache, end_to_end, kernel_profile, log,
                            measure_stage, repeated_genome, resume_check, save, stage_alone)
from report.table import table
from benchmarks import common
from virnucpro import embed, perf, pipeline, settings
from virnucpro.fasta import read_fasta
from virnucpro.outputs import chunk_verdicts, package_commit


class Run:
    """What every section reads: the options, the device, the genome's ORFs, and the report it fills."""

    def __init__(self, args, dev: torch.device):
        self.args, self.dev = args, dev
        # A dry run is the tiny preset on the CPU: the same code path at a size CI can afford.
        self.preset = self.profile = "tiny" if args.dry_run else "full"
        self.report = {"commit": package_commit(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                       "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "none (dry run)",
                       "gpus": torch.cuda.device_count(),
                       "torch": torch.__version__, "python": platform.python_version(), "host": platform.node()}
        self.peak = perf.measure_peak_flops(dev) if dev.type == "cuda" else float("nan")
        self.report["peak_bf16_flops"] = self.peak
        log(f"peak bf16 matmul: {self.peak / 1e12:.0f} TFLOP/s")
        self.fast = "bf16" if dev.type == "cuda" else "fp32"
        self.random_src = f"random:{self.preset}"
        self.w = common.workload(self.profile)
        self.records = [r for f in self.w["files"][:-1] for r in read_fasta(f)[0]]
        self.data = pipeline.InputData(Path(self.w["files"][0]), self.records, [])
        pipeline.prepare(self.data, 500, pipeline.StageClock())
        self.orfs = self.data.orfs
        self.report["genome_orfs"] = len(self.orfs)
        self.report["mean_protein_aa"] = float(np.mean([len(o.protein) for o in self.orfs]))
        log(f"genome: {len(self.data.chunks)} chunks, {len(self.orfs)} ORFs, "
            f"mean protein {self.report['mean_protein_aa']:.1f} aa")


def section_stages(run: Run) -> None:
    """Each model alone: throughput, MFU, utilisation, kernel profile, and the asked-for variants."""
    args, dev, report, peak = run.args, run.dev, run.report, run.peak
    fast, random_src, orfs = run.fast, run.random_src, run.orfs
    prot, nuc = [o.protein for o in orfs], [o.nucleotide for o in orfs] * DNABERT_REPEAT
    esm = embed.load_protein_model(random_src, dev, fast)
    measure_stage(report, "esm2", esm, prot, peak, args.unfused_variant, profile_items=600)
    if args.esm_layer_variant:  # VIRNUCPRO_ESM_LAYER=fused against today's layer, same process
        with settings.override(esm_layer="fused"):
            report["esm2_layer_fused"] = stage_alone("esm2", esm, prot, peak)
            report["esm2_layer_fused_kernels"] = kernel_profile(esm, prot[:600])
            fused_rows = esm.embed(prot[:256])
        diff = (fused_rows - esm.embed(prot[:256])).abs()
        report["esm2_layer_fused"]["embedding_max_abs_diff"] = float(diff.max())
    del esm
    empty_cache(dev)
    if args.compile_variant:
        try:
            t0 = time.perf_counter()
            esm = embed.load_protein_model(random_src, dev, fast, compile=True)
            report["esm2_compiled"] = stage_alone("esm2", esm, [o.protein for o in orfs], peak)
            report["esm2_compiled"]["wall_seconds_with_compile"] = time.perf_counter() - t0
            del esm
        except Exception as e:  # a compile failure must not cost the rest of the report
            report["esm2_compiled"] = {"error": f"{type(e).__name__}: {e}"[:500]}
            log("compiled variant failed:", report["esm2_compiled"]["error"])
        empty_cache(dev)
    dna = embed.load_dna_model(random_src, dev, fast)
    measure_stage(report, "dnabert", dna, nuc, peak, args.unfused_variant, profile_items=1200)
    for block in args.flex_block_variant:
        try:
            with settings.override(flex_block=block):
                report[f"dnabert_flex{block}"] = stage_alone("dnabert", dna, nuc, peak)
                report[f"dnabert_flex{block}_kernels"] = kernel_profile(dna, nuc[:1200])
        except Exception as e:  # a variant that does not compile must not cost the rest
            report[f"dnabert_flex{block}"] = {"error": f"{type(e).__name__}: {e}"[:500]}
    del dna
    empty_cache(dev)


def section_agreement(run: Run) -> None:
    """bf16 against fp32 embeddings and verdicts, and the same batch embedded twice."""
    args, dev, report, random_src, data, orfs = run.args, run.dev, run.report, run.random_src, run.data, run.orfs
    sub = orfs[: args.agreement_orfs]
    agree = {}
    feats = {}
    for name, loader, seqs in (("dnabert", embed.load_dna_model, [o.nucleotide for o in sub]),
                               ("esm2", embed.load_protein_model, [o.protein for o in sub])):
        ref = loader(random_src, dev, "fp32", batch_tokens=2048)
        ref_emb = ref.embed(seqs)
        ref.model.to(torch.bfloat16 if dev.type == "cuda" else torch.float32)
        ref.batch_tokens = embed.auto_token_budget(ref.model, dev)
        fast_emb = ref.embed(seqs)
        cos = cosine_rows(fast_emb, ref_emb)
        # --resume promises bit-identical scores, which needs every GPU kernel to give a batch
        # the same bits twice (docs/RELIABILITY.md).
        again = ref.embed(seqs)
        agree[name] = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                       "orfs_below_0.999": int((cos < 0.999).sum()), "orfs": len(seqs),
                       "orfs_not_bit_identical_when_repeated": int((again != fast_emb).any(dim=1).sum()),
                       "max_abs_diff_when_repeated": float((again - fast_emb).abs().max())}
        feats[name] = (ref_emb, fast_emb)
        del ref
        empty_cache(dev)
    clf = embed.random_classifier(feats["dnabert"][0].shape[1] + feats["esm2"][0].shape[1], 512, seed=0)
    sub_data = pipeline.InputData(data.path, data.records, [], data.chunks, sub)
    verdicts = []
    for k in (0, 1):
        x = torch.cat([feats["dnabert"][k], feats["esm2"][k]], dim=1)
        with torch.no_grad():
            logits = clf(x)
        probs = torch.softmax(logits, 1).numpy()
        verdicts.append(chunk_verdicts(sub_data, pipeline.Prediction(logits.numpy(), probs, x.numpy())))
    same = sum(verdicts[0][c] == verdicts[1][c] for c in verdicts[0])
    agree["chunk_verdict_agreement"] = same / len(verdicts[0])
    report["agreement"] = agree
    log(f"agreement: {json.dumps(agree)}")


def section_resume(run: Run) -> None:
    run.report["resume"] = resume_check(Path(run.w["files"][0]), run.dev, run.preset)


def section_e2e(run: Run) -> None:
    """`predict` end to end on the repeated genome and on 150 bp reads."""
    args, dev, report, w = run.args, run.dev, run.report, run.w
    opts = common.pipeline_options("fast", run.profile)
    models = pipeline.load_models(opts)
    root = Path(tempfile.mkdtemp(prefix="virnucpro-genome-"))
    report["e2e_genome"] = end_to_end(repeated_genome(root, run.profile), models, opts, "genome", args.e2e_seconds)
    report["e2e_reads"] = end_to_end([w["reads_file"]], models, opts, "150 bp reads")
    if "esm2" in report:
        report["e2e_genome"]["fraction_of_esm_alone"] = report["e2e_genome"]["orfs_per_second"] / report["esm2"]["items_per_second"]
    del models
    empty_cache(dev)


def section_reference(run: Run) -> None:
    """Speedup over `--engine reference` on a genome subset."""
    args, dev, report, records = run.args, run.dev, run.report, run.records
    root = Path(tempfile.mkdtemp(prefix="virnucpro-ref-"))
    sub_path = root / "subset.fna"
    genome = "".join(r.seq for r in records)[: args.reference_bp]
    sub_path.write_text(f">subset\n{genome}\n")
    warm = root / "warm.fna"
    warm.write_text(f">warm\n{genome[:20_000]}\n")
    runs = {}
    for engine in ("fast", "reference"):
        o = common.pipeline_options(engine, run.profile)
        m = pipeline.load_models(o)
        end_to_end([str(warm)], m, o, f"{engine} warm-up", monitored=False)  # kernels, compiled attention
        # The first timed run follows a warm-up of one size only; the second repeats the same
        # input with every shape already seen.
        for k in ("first", "repeat"):
            graphs = perf.compiled_graphs()
            d = end_to_end([str(sub_path)], m, o, f"{engine} {k}", monitored=False)
            runs[f"{engine}_{k}"] = {"seconds": d["seconds"], "stage_seconds": d["stage_seconds"],
                                     "graphs_compiled_in_clock": perf.compiled_graphs() - graphs}
        del m
        empty_cache(dev)
    ref = runs["reference_repeat"]["seconds"]
    report["reference"] = {"bp": args.reference_bp, "runs": runs,
                           "seconds": {"fast": runs["fast_repeat"]["seconds"], "reference": ref},
                           "speedup": ref / runs["fast_repeat"]["seconds"],
                           "speedup_first_run": runs["reference_first"]["seconds"] / runs["fast_first"]["seconds"]}
    log(f"reference: {json.dumps(runs)}, speedup {report['reference']['speedup']:.1f}x "
        f"(first run after a one-size warm-up {report['reference']['speedup_first_run']:.1f}x)")


def section_user(run: Run) -> None:
    """The user's view: CLI runs from start to written results (report/user_view.py)."""
    args, dev, report, records = run.args, run.dev, run.report, run.records
    report["user"] = user_view.user_view(run.preset, dev.type, records, args.user_metagenome_bp, args.user_reads,
                                         esm_sample=4000 if dev.type == "cuda" else 40,
                                         reference=not args.user_no_reference, log=log)


def section_layouts(run: Run) -> None:
    """The same held-out metagenome-like input under three layouts (defaults, half the range size,
    a small explicit token budget), each `predict` as a user runs it: are the result files the
    same bytes?  Their SHA-256 go in the report, to compare across GPUs."""
    import hashlib

    from benchmarks import datasets

    args, dev = run.args, run.dev
    root = Path(tempfile.mkdtemp(prefix="virnucpro-layouts-"))
    path = root / "heldout.fna"
    datasets.write_fasta(path, datasets.metagenome(args.layout_bp, seed=777))  # seed unlike the suite's
    data = pipeline.InputData(path, read_fasta(path)[0], [])
    half = max(1, data.chunk_count(500) // 16)  # ranges of 1/16 of the input instead of one range
    layouts = {"default": [], f"checkpoint-every {half}": ["--checkpoint-every", str(half)],
               "batch-tokens 8192": ["--batch-tokens", "8192"]}
    files = ("prediction_results.txt", "prediction_results_highestscore.csv", "contig_summary.tsv", "skipped.tsv")
    d = {"input_bp": args.layout_bp, "orfs": None, "sha256": {}, "errors": {}}
    for name, extra in layouts.items():
        out = root / name.replace(" ", "_")
        p = subprocess.run([sys.executable, "-m", "virnucpro", "predict", str(path), "-l", "500", "--random-weights",
                            "--preset", run.preset, "--device", dev.type, "--no-progress", "-o", str(out), *extra],
                           cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            d["errors"][name] = p.stderr[-500:]
            continue
        d["orfs"] = json.loads((out / "heldout" / "run.json").read_text())["counts"]["orfs"]
        d["sha256"][name] = {f: hashlib.sha256((out / "heldout" / f).read_bytes()).hexdigest() for f in files}
    d["identical"] = len({json.dumps(h, sort_keys=True) for h in d["sha256"].values()}) == 1 and not d["errors"]
    run.report["layouts"] = d
    log(f"layouts: identical={d['identical']} over {list(d['sha256'])}")


SECTIONS = {"stages": section_stages, "agreement": section_agreement, "resume": section_resume, "e2e": section_e2e,
            "reference": section_reference, "user": section_user, "layouts": section_layouts}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.environ.get("OUT", "docs/perf"), help="folder for gpu_report.json")
    ap.add_argument("--e2e-seconds", type=float, default=120, help="repeat the genome until the run lasts this long")
    ap.add_argument("--agreement-orfs", type=int, default=1000)
    ap.add_argument("--reference-bp", type=int, default=400_000, help="size of the reference-engine comparison")
    sections = list(SECTIONS)
    ap.add_argument("--skip", nargs="*", default=[], choices=sections)
    ap.add_argument("--only", nargs="*", choices=sections, help="run only these sections")
    ap.add_argument("--user-metagenome-bp", type=int, default=24_000_000,
                    help="size of the user-view section's metagenome-like input")
    ap.add_argument("--user-reads", type=int, default=50_000, help="150 bp reads in the user-view section")
    ap.add_argument("--user-no-reference", action="store_true", help="user-view section without the reference CLI run")
    ap.add_argument("--layout-bp", type=int, default=4_000_000, help="size of the layouts section's held-out input")
    ap.add_argument("--unfused-variant", action="store_true",
                    help="also time both stages with the elementwise fusions off (VIRNUCPRO_FUSED=0)")
    ap.add_argument("--flex-block-variant", type=int, nargs="*", default=[], metavar="N",
                    help="also time DNABERT-S with FlexAttention blocks of N tokens (e.g. 128; 64 is the default)")
    ap.add_argument("--compile-variant", action="store_true", help="also time ESM-2 with torch.compile'd layers")
    ap.add_argument("--esm-layer-variant", action="store_true",
                    help="also time ESM-2 with VIRNUCPRO_ESM_LAYER=fused (add + LayerNorm kernel, GELU in fc1's GEMM)")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, tiny preset, tiny profile: checks this script, measures nothing worth reporting")
    args = ap.parse_args(argv)
    if args.only is not None:
        args.skip = [x for x in sections if x not in args.only]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        dev = torch.device("cpu")
    elif not torch.cuda.is_available():
        log("gpu_report needs a CUDA GPU (or --dry-run)")
        return 2
    else:
        dev = torch.device("cuda")
    run = Run(args, dev)
    for name, section in SECTIONS.items():
        if name not in args.skip:
            section(run)
        save(run.report, args.out)
    print(table(run.report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
