"""Result files of one input.  Written into a temp folder under OUT/.virnucpro/partial/, fsync'ed
and renamed into place, so an interrupted run never leaves a half-written result folder behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import virnucpro
from virnucpro import faults, owned
from virnucpro.checkpoint import DIR
from virnucpro.durable import fsync_dir, writing
from virnucpro.errors import InputError
from virnucpro.fasta import write_fasta

RANDOM_WARNING = "made with RANDOM weights (no trained models given): scores are meaningless, for testing and benchmarking only"


def package_commit() -> str | None:
    here = Path(virnucpro.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip() if out.returncode == 0 else ""
    if not sha:
        return None
    # Tracked files that differ from HEAD: the code that ran is not that commit.
    diff = subprocess.run(["git", "-C", str(here), "diff", "--quiet", "HEAD", "--", "."], capture_output=True, timeout=5)
    return sha + ("+dirty" if diff.returncode == 1 else "")


def _fmt(x) -> str:
    return "NA" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x}"


def prediction_rows(data, pred):
    """(ORF id, verdict, score1, score2): as the original's prediction_results.txt."""
    virus = pred.logits[:, 1] > pred.logits[:, 0]  # torch.max picks class 0 on a tie, as the original did
    for orf, is_virus, (s1, s2) in zip(data.orfs, virus, pred.probs):
        yield orf.id, "virus" if is_virus else "others", s1, s2


def iter_chunk_verdicts(data, pred) -> Iterator[tuple[str, bool, float]]:
    """(chunk id, viral, max score2) of every chunk with ORFs, in input order: viral when
    max(score2) >= max(score1) over its frames.  A chunk's ORFs are consecutive."""
    cur, m1, m2 = None, -1.0, -1.0
    for orf, (s1, s2) in zip(data.orfs, pred.probs):
        if orf.chunk_id != cur:
            if cur is not None:
                yield cur, bool(m2 >= m1), m2
            cur, m1, m2 = orf.chunk_id, -1.0, -1.0
        m1, m2 = max(m1, s1), max(m2, s2)
    if cur is not None:
        yield cur, bool(m2 >= m1), m2


def chunk_verdicts(data, pred) -> dict[str, bool]:
    return {cid: viral for cid, viral, _ in iter_chunk_verdicts(data, pred)}


def _record_lengths(data) -> Iterator[tuple[str, int]]:
    if getattr(data, "spool", None) is not None:
        return iter(data.spool.records)  # the file is not read a third time
    return ((r.id, len(r.seq)) for r in data.records)


def _chunks_with_orf_counts(data) -> Iterator[tuple]:
    if hasattr(data.chunks, "with_orf_counts"):
        return data.chunks.with_orf_counts()
    n = Counter(o.chunk_id for o in data.orfs)
    return ((c, n[c.id]) for c in data.chunks)


def contig_summary(data, verdicts: Iterator[tuple[str, bool, float]]) -> Iterator[tuple]:
    """One row per record, from `verdicts` (iter_chunk_verdicts) consumed in step with the
    chunks: every input is in record order, so nothing is held but the current record."""
    chunks = _chunks_with_orf_counts(data)
    chunk = next(chunks, None)
    for rid, length in _record_lengths(data):
        total = with_orf = viral = 0
        best = None
        while chunk is not None and chunk[0].parent == rid:
            total += 1
            if chunk[1]:
                cid, is_viral, m2 = next(verdicts)
                if cid != chunk[0].id:
                    raise RuntimeError(f"ORFs and chunks out of step: {cid} at chunk {chunk[0].id}")
                with_orf += 1
                viral += is_viral
                best = m2 if best is None else max(best, m2)
            chunk = next(chunks, None)
        frac = round(viral / with_orf, 4) if with_orf else None
        yield rid, length, total, with_orf, viral, frac, best


def write_result_dir(out_root: Path, data, pred, run_info: dict, random_weights: bool,
                     keep_intermediate: bool = False) -> tuple[Path, int]:
    """OUT/<stem>/, stamped with the run recorded in OUT/.virnucpro/manifest.json (see owned.py),
    and the number of chunks called viral.  It replaces a folder of that name only if the same
    run made it (a resume after a kill between writing it and marking its input done); anything
    else in the way is an InputError."""
    if not owned.plain_name(data.stem):
        raise InputError(f"{owned.shown(data.path)}: '{owned.shown(data.stem)}' cannot name a result folder")
    began = time.perf_counter()
    run = _run_id(out_root)
    final = out_root / data.stem
    tmp = out_root / DIR / "partial" / f"{data.stem}.{os.getpid()}"
    try:
        with writing(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            viral = _write_files(tmp, data, pred, run_info, random_weights, keep_intermediate, began)
            owned.stamp(tmp, run)
            for p in tmp.rglob("*"):
                if p.is_file():
                    with open(p, "rb+") as f:
                        os.fsync(f.fileno())
            why = owned.problem(final, {run})
            if why:
                raise InputError(f"{why}; it is in the way of the results of {owned.shown(data.path)}: move it "
                                 "away, then run the same command with --resume")
            if os.path.lexists(final):
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_dir(out_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, viral


def _run_id(out_root: Path) -> str | None:
    """The id of the run in progress, None outside a run (a caller without checkpoints)."""
    try:
        m = json.loads((out_root / DIR / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return m.get("run") if isinstance(m, dict) else None


def _write_files(tmp: Path, data, pred, run_info: dict, random_weights: bool, keep_intermediate: bool,
                 began: float | None = None) -> int:
    """The result files; returns the number of chunks called viral."""
    with open(tmp / "prediction_results.txt", "w") as f:
        f.write("Sequence_ID\tPrediction\tscore1\tscore2\n")
        for row in prediction_rows(data, pred):
            f.write("\t".join(_fmt(x) for x in row) + "\n")
    faults.point("write", tmp / "prediction_results.txt")
    classified = viral_chunks = 0
    with open(tmp / "prediction_results_highestscore.csv", "w") as hf, open(tmp / "contig_summary.tsv", "w") as f:
        hf.write("Modified_ID\tIs_Virus\n")

        def verdicts():
            nonlocal classified, viral_chunks
            for cid, viral, m2 in iter_chunk_verdicts(data, pred):
                hf.write(f"{cid}\t{viral}\n")
                classified += 1
                viral_chunks += viral
                yield cid, viral, m2

        if random_weights:
            f.write(f"# WARNING: {RANDOM_WARNING}\n")
        f.write("sequence_id\tlength\tchunks_total\tchunks_with_orfs\tchunks_viral\tfraction_viral\tmax_viral_score\n")
        for row in contig_summary(data, verdicts()):
            f.write("\t".join(_fmt(x) for x in row) + "\n")
    with open(tmp / "skipped.tsv", "w") as f:
        f.write("id\treason\n")
        f.writelines(f"{i}\t{r}\n" for i, r in data.skipped)
    if keep_intermediate:
        inter = tmp / "intermediate"
        inter.mkdir()
        write_orf_files(inter, data)
        np.save(inter / "features.npy", pred.features)

    skipped = Counter(r for _, r in data.skipped)
    counts = {
        "sequences": len(data.records) + skipped["empty_sequence"],
        "chunks": len(data.chunks),
        "chunks_classified": classified,
        "orfs": len(data.orfs),
        "skipped": dict(skipped),
        "rna_bases_read_as_t": getattr(data, "rna_bases", 0),
    }
    info = {**run_info, "input": str(data.path.resolve()), "counts": counts}
    if isinstance(info.get("seconds"), dict) and began is not None:
        # the files up to this one: what an input's writing costs (replay.py), less the fsyncs
        info["seconds"] = {**info["seconds"], "write_results": round(time.perf_counter() - began, 4)}
    if random_weights:
        info["warning"] = RANDOM_WARNING
    with open(tmp / "run.json", "w") as f:
        json.dump(info, f, indent=2, default=str)
        f.write("\n")
    return viral_chunks


def write_orf_files(out_dir: Path, data) -> None:
    write_fasta(out_dir / "chunks.fa", ((c.id, c.seq) for c in data.chunks))
    write_fasta(out_dir / "orfs.fna", ((o.id, o.nucleotide) for o in data.orfs))
    write_fasta(out_dir / "orfs.faa", ((o.id, o.protein) for o in data.orfs))
