"""`predict`: FASTA -> chunks -> ORFs -> DNABERT-S + ESM-2 embeddings -> MLP -> verdicts.

Every input is read and validated before any model loads or anything is written, so
a bad file costs nothing and leaves OUT untouched.  Models load once per invocation.
ORFs are scored in fixed ranges, each saved as soon as it is done (see checkpoint.py).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from virnucpro import checkpoint, embed, faults, owned, parallel
from virnucpro.chunking import Chunk, chunk_records
from virnucpro.errors import InputError, ModelLoadError
from virnucpro.fasta import Record, read_fasta
from virnucpro.presets import PRESETS
from virnucpro.translate import ORF, identify_orfs

SKIP_EMPTY = "empty_sequence"
SKIP_NO_ORF = "no_stop_free_frame"


@dataclass
class Options:
    chunk_len: int = 500
    classifier: str | None = None
    dnabert: str = "zhihan1996/DNABERT-S"
    esm: str = "esm2_t36_3B_UR50D"
    random_weights: bool = False
    preset: str = "full"
    device: str = "auto"
    precision: str = "auto"
    dna_batch_tokens: int | None = None
    esm_batch_tokens: int | None = None
    seed: int = 0
    progress: bool = True
    compile: bool = False


@dataclass
class Models:
    dna: embed.Embedder
    protein: embed.Embedder
    classifier: torch.nn.Module
    weights: dict
    random: bool
    device: torch.device
    seconds: dict = field(default_factory=dict)


@dataclass
class InputData:
    path: Path
    records: list[Record]
    skipped: list[tuple[str, str]]
    chunks: list[Chunk] = field(default_factory=list)
    orfs: list[ORF] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return output_stem(self.path)


@dataclass
class Prediction:
    logits: np.ndarray  # [n_orfs, 2]
    probs: np.ndarray   # [n_orfs, 2]
    features: np.ndarray  # [n_orfs, dna_dim + protein_dim]


class StageClock:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def output_stem(path: Path) -> str:
    """The name of an input's result folder OUT/<stem>/: its file name without leading dots and
    without one FASTA and one gzip suffix (`reads.fna.gz` -> `reads`, `.virnucpro.fa` -> `virnucpro`),
    every character that is not printable (control characters, bytes that are not UTF-8) replaced
    by `_`.  So a stem is never `.`, `..` or a name starting with a dot, which OUT keeps for the
    program's own files.  Empty when nothing is left (a name of dots only): read_inputs refuses it."""
    name = path.name.lstrip(".")
    for suffix in (".gz", ".fasta", ".fna", ".fa", ".fas", ".ffn", ".txt"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return "".join(c if c.isprintable() else "_" for c in name)


def read_inputs(paths: list[str | Path]) -> list[InputData]:
    inputs, seen = [], {}
    for p in paths:
        path = Path(p)
        records, skipped = read_fasta(path)
        data = InputData(path, records, [(rid, SKIP_EMPTY) for rid, _ in skipped])
        if not owned.plain_name(data.stem):
            raise InputError(f"{owned.shown(path)}: no output folder name can be made from this file name "
                             "(empty or too long once leading dots and suffixes are taken off); rename it")
        # casefold: two stems that differ only in case are one folder on macOS and Windows file systems
        key = data.stem.casefold()
        if key in seen:
            raise InputError(f"{owned.shown(path)}: output name '{data.stem}' clashes with input "
                             f"{owned.shown(seen[key])}; rename one")
        seen[key] = path
        inputs.append(data)
    return inputs


def prepare(data: InputData, chunk_len: int, clock: StageClock) -> InputData:
    with clock("chunk"):
        data.chunks = chunk_records(data.records, chunk_len)
    faults.point("chunking")
    with clock("translate"):
        data.orfs = identify_orfs(data.chunks)
    with_orf = {o.chunk_id for o in data.orfs}
    data.skipped += [(c.id, SKIP_NO_ORF) for c in data.chunks if c.id not in with_orf]
    return data


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def load_models(opts: Options) -> Models:
    clock = StageClock()
    device = embed.resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    dna_src = f"random:{opts.preset}" if opts.random_weights else opts.dnabert
    esm_src = f"random:{opts.preset}" if opts.random_weights else opts.esm
    with clock("load_dnabert"):
        dna = embed.load_dna_model(dna_src, device, precision, seed=opts.seed, batch_tokens=opts.dna_batch_tokens)
    with clock("load_esm2"):
        protein = embed.load_protein_model(esm_src, device, precision, seed=opts.seed,
                                             batch_tokens=opts.esm_batch_tokens, compile=opts.compile)
    with clock("load_classifier"):
        if opts.classifier:
            clf = embed.load_classifier(opts.classifier)
            clf_info = {"path": str(Path(opts.classifier).resolve())}
        elif opts.random_weights:
            shape = PRESETS[opts.preset]["classifier"]
            clf = embed.random_classifier(dna.dim + protein.dim, shape["hidden_dim"], seed=opts.seed)
            clf_info = {"random": True, "seed": opts.seed, "preset": opts.preset}
        else:
            raise ModelLoadError("no classifier given: pass --classifier 300_model.pth/500_model.pth "
                                 "(from the original VirNucPro release) or use --random-weights")
    if clf.input_dim != dna.dim + protein.dim:
        raise ModelLoadError(
            f"classifier expects {clf.input_dim}-d features but the embedders give "
            f"{dna.dim} (DNA) + {protein.dim} (protein) = {dna.dim + protein.dim}")
    weights = {"dnabert": dna.info, "esm2": protein.info, "classifier": clf_info, "precision": precision}
    return Models(dna, protein, clf.to(device), weights, opts.random_weights, device, clock.seconds)


def _bar(total: int, desc: str, unit: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True)


def classify(data: InputData, models: Models, progress: bool, clock: StageClock, subset=None) -> Prediction:
    orfs = data.orfs if subset is None else [data.orfs[i] for i in subset]
    with _bar(len(orfs), "DNABERT-S", "ORF", progress) as dbar, _bar(len(orfs), "ESM-2", "ORF", progress) as pbar:
        return _classify(orfs, models, clock, dbar.update, pbar.update)


def _classify(orfs, models: Models, clock: StageClock, on_dna=None, on_protein=None) -> Prediction:
    with clock("dnabert"):
        dna = models.dna.embed([o.nucleotide for o in orfs], on_batch=on_dna)
    faults.point("dnabert")
    with clock("esm2"):
        prot = models.protein.embed([o.protein for o in orfs], on_batch=on_protein)
    faults.point("esm2")
    with clock("merge"):
        features = torch.cat([dna, prot], dim=1)
    with clock("predict"), torch.inference_mode():
        logits = models.classifier(features.to(models.device)).float().cpu() if orfs else torch.empty(0, 2)
        probs = torch.softmax(logits, dim=1)
    faults.point("predict")
    return Prediction(logits.numpy(), probs.numpy(), features.numpy())


def _score_ranges(data: InputData, spans, models: Models, store: checkpoint.Store, progress: bool,
                  clock: StageClock, keep: bool, main: bool) -> None:
    total = sum(b - a for a, b in spans)
    with _bar(total, "DNABERT-S", "ORF", progress) as dbar, _bar(total, "ESM-2", "ORF", progress) as pbar:
        for a, b in spans:
            part = _classify(data.orfs[a:b], models, clock, dbar.update, pbar.update)
            with clock("checkpoint"):
                store.save(data, a, b, part, keep)
                if main:
                    store.note(data.stem)


def _agree_on_budgets(models: Models, opts: Options, store: checkpoint.Store, r: parallel.Rank) -> None:
    """An automatic token budget depends on free GPU memory, and batches of another size round
    differently.  So every rank, and every resume, uses the budget rank 0 chose first (kept in
    the manifest): a range then gets the same batches whoever computes it."""
    auto = {k: e for k, e, given in (("dnabert", models.dna, opts.dna_batch_tokens),
                                     ("esm2", models.protein, opts.esm_batch_tokens)) if given is None}
    if r.is_main and any(k not in store.manifest.get("auto_batch_tokens", {}) for k in auto):
        chosen = store.manifest.setdefault("auto_batch_tokens", {})
        for k, e in auto.items():
            chosen.setdefault(k, e.batch_tokens)
        store.write_manifest()
    chosen = parallel.broadcast(store.manifest.get("auto_batch_tokens", {}) if r.is_main else None, r)
    for k, e in auto.items():
        e.batch_tokens = chosen[k]


def run(paths: list[str], out: Path, opts: Options, run_info: dict, keep_intermediate: bool = False,
        persistent: bool = True, r: parallel.Rank = parallel.Rank()) -> list[str]:
    """Predict every input; called once per rank, while the main process holds the session of
    checkpoint.Store(out) (lock and manifest).  Rank 0 decides which ranges are still to do and
    deals them out, every rank saves what it scores, rank 0 merges the saved ranges and writes
    the results.  Returns, on rank 0, one summary line per input."""
    parallel.init_group(r, opts.device == "cuda" or (opts.device == "auto" and torch.cuda.is_available()))
    started = run_info.get("started_unix")
    # Interpreter, imports, spawned workers and the process group, before any input is read.
    run_info = {**run_info, "startup_seconds": round(time.time() - started, 3) if started else None}
    store = checkpoint.Store(out)
    store.manifest = parallel.broadcast(store.read_manifest() if r.is_main else None, r)
    inputs = read_inputs(paths)
    clocks = [StageClock() for _ in inputs]
    models, lines = None, []
    # One thread chunks and translates the next input while this one is on the GPU.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="virnucpro-prepare") as pool:
        prepared = pool.submit(prepare, inputs[0], opts.chunk_len, clocks[0]) if inputs else None
        for k, data in enumerate(inputs):
            t0 = time.perf_counter()
            prepared.result()
            if k + 1 < len(inputs):
                prepared = pool.submit(prepare, inputs[k + 1], opts.chunk_len, clocks[k + 1])
            models, line = _predict_input(data, clocks[k], t0, models, store, opts, run_info, keep_intermediate,
                                          persistent, r, out)
            if line:
                lines.append(line)
    parallel.barrier(r)
    return lines


def _predict_input(data: InputData, clock: StageClock, t0: float, models, store, opts: Options, run_info: dict,
                   keep_intermediate: bool, persistent: bool, r: parallel.Rank, out: Path):
    """Score one prepared input (this rank's ranges) and, on rank 0, merge and write its results.
    Returns the models (loaded here if needed) for the next input, and rank 0's summary line."""
    from virnucpro.outputs import chunk_verdicts, write_result_dir

    spans = store.ranges(len(data.orfs))
    todo = parallel.broadcast(store.pending(data, spans) if r.is_main else None, r)
    if todo is None:
        return models, (f"{data.path}: finished by an earlier run -> {out / data.stem}" if r.is_main else None)
    if models is None or not persistent:
        models = None  # drop the old copy before loading the next
        models = load_models(opts)
        _agree_on_budgets(models, opts, store, r)
    mine = [spans[i] for i in todo[r.rank::r.world]]
    _score_ranges(data, mine, models, store, opts.progress and r.is_main, clock, keep_intermediate, r.is_main)
    per_rank = parallel.gather(clock.seconds, r)
    if r.is_main:
        with clock("gather"):
            cols = store.load(data, spans, models.dna.dim + models.protein.dim, keep_intermediate)
        faults.point("merge")
        pred = Prediction(cols["logits"], cols["probs"], cols["features"])
        seconds = {**models.seconds, **clock.seconds}
        if r.world > 1:
            seconds["per_rank"] = per_rank
        n = len(data.orfs)
        info = {**run_info, "device": str(models.device), "weights": models.weights, "world_size": r.world,
                "persistent_models": persistent,
                "batch_tokens": {"dnabert": models.dna.batch_tokens, "esm2": models.protein.batch_tokens},
                "checkpoint": {"ranges": len(spans), "reused": len(spans) - len(todo)},
                "seconds": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in seconds.items()},
                "total_seconds": round(time.perf_counter() - t0, 3)}
        final = write_result_dir(out, data, pred, info, models.random, keep_intermediate)
        store.finish(data.stem)
        viral = sum(chunk_verdicts(data, pred).values())
        return models, (f"{data.path}: {len(data.records)} sequences, {len(data.chunks)} chunks, {n} ORFs, "
                        f"{viral} chunks called viral, {len(data.skipped)} skipped -> {final}")
    return models, None
