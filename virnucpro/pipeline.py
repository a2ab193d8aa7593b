"""`predict`: FASTA -> chunks -> ORFs -> DNABERT-S + ESM-2 embeddings -> MLP -> verdicts.

Every input is read and validated before any model loads or anything is written, so
a bad file costs nothing and leaves OUT untouched.  Models load once per invocation.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from virnucpro import embed, parallel
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
    name = path.name
    for suffix in (".gz", ".fasta", ".fna", ".fa", ".fas", ".ffn", ".txt"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def read_inputs(paths: list[str | Path]) -> list[InputData]:
    inputs, seen = [], {}
    for p in paths:
        path = Path(p)
        records, skipped = read_fasta(path)
        data = InputData(path, records, [(rid, SKIP_EMPTY) for rid, _ in skipped])
        if data.stem in seen:
            raise InputError(f"{path}: output name '{data.stem}' clashes with input {seen[data.stem]}; rename one")
        seen[data.stem] = path
        inputs.append(data)
    return inputs


def prepare(data: InputData, chunk_len: int, clock: StageClock) -> InputData:
    with clock("chunk"):
        data.chunks = chunk_records(data.records, chunk_len)
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
    n = len(orfs)
    with clock("dnabert"), _bar(n, "DNABERT-S", "ORF", progress) as bar:
        dna = models.dna.embed([o.nucleotide for o in orfs], on_batch=bar.update)
    with clock("esm2"), _bar(n, "ESM-2", "ORF", progress) as bar:
        prot = models.protein.embed([o.protein for o in orfs], on_batch=bar.update)
    with clock("merge"):
        features = torch.cat([dna, prot], dim=1)
    with clock("predict"), torch.inference_mode():
        logits = models.classifier(features.to(models.device)).float().cpu() if n else torch.empty(0, 2)
        probs = torch.softmax(logits, dim=1)
    return Prediction(logits.numpy(), probs.numpy(), features.numpy())



def run(paths: list[str], out: Path, opts: Options, run_info: dict, keep_intermediate: bool = False,
        persistent: bool = True, r: parallel.Rank = parallel.Rank()) -> list[str]:
    """Predict every input; called once per rank.  Rank 0 writes the results and
    returns one summary line per input."""
    from virnucpro.outputs import chunk_verdicts, write_result_dir

    parallel.init_group(r, opts.device == "cuda" or (opts.device == "auto" and torch.cuda.is_available()))
    inputs = read_inputs(paths)
    models, lines = None, []
    for data in inputs:
        t0 = time.perf_counter()
        if models is None or not persistent:
            models = None  # drop the old copy before loading the next
            models = load_models(opts)
        clock = StageClock()
        prepare(data, opts.chunk_len, clock)
        mine = parallel.shard([len(o.protein) for o in data.orfs], r.world)[r.rank]
        part = classify(data, models, opts.progress and r.is_main, clock, subset=mine)
        parts = parallel.gather((mine, part, clock.seconds), r)
        if r.is_main:
            n = len(data.orfs)
            pred = Prediction(*(parallel.unshard(n, [(i, getattr(p, f)) for i, p, _ in parts])
                                for f in ("logits", "probs", "features")))
            seconds = {**models.seconds, **clock.seconds}
            if r.world > 1:
                seconds["per_rank"] = [s for _, _, s in parts]
            info = {**run_info, "device": str(models.device), "weights": models.weights, "world_size": r.world,
                    "persistent_models": persistent,
                    "seconds": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in seconds.items()},
                    "total_seconds": round(time.perf_counter() - t0, 3)}
            final = write_result_dir(out, data, pred, info, models.random, keep_intermediate)
            viral = sum(chunk_verdicts(data, pred).values())
            lines.append(f"{data.path}: {len(data.records)} sequences, {len(data.chunks)} chunks, {n} ORFs, "
                         f"{viral} chunks called viral, {len(data.skipped)} skipped -> {final}")
    parallel.barrier(r)
    return lines
