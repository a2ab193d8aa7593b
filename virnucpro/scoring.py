"""The scoring stages: load the models, embed ORFs with DNABERT-S and ESM-2, join the
embeddings and run the classifier.  One range of ORFs in, logits and probabilities out."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from virnucpro import embed, faults, trace
from virnucpro.errors import ModelLoadError, NonFiniteError
from virnucpro.inputs import InputData, StageClock
from virnucpro.presets import PRESETS
from virnucpro.runner import in_row_blocks


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
class Prediction:
    logits: np.ndarray  # [n_orfs, 2]
    probs: np.ndarray   # [n_orfs, 2]
    features: np.ndarray  # [n_orfs, dna_dim + protein_dim]


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
    if device.type == "cuda":
        torch.empty(0, device=device)  # the CUDA context, timed apart from the weights
    trace.mark("cuda_context")
    with clock("load_dnabert"):
        dna = embed.load_dna_model(dna_src, device, precision, seed=opts.seed, batch_tokens=opts.dna_batch_tokens)
    warm = _Warm(dna) if device.type == "cuda" else None
    # The automatic budget follows free memory, which the warm-up's must not move: it is taken
    # once the warm-up is done (a compiled model warms up at load with its budget).
    later = warm is not None and opts.esm_batch_tokens is None and not opts.compile
    with clock("load_esm2"):
        protein = embed.load_protein_model(esm_src, device, precision, seed=opts.seed,
                                             batch_tokens=1 if later else opts.esm_batch_tokens, compile=opts.compile)
    dna.row_blocks = protein.row_blocks = opts.row_blocks
    if warm is not None:
        with clock("warm_dnabert"):
            warm.join()
        torch.cuda.empty_cache()
    if later:
        protein.batch_tokens = embed.auto_token_budget(protein.model, device)
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
    trace.mark("models_loaded")
    return Models(dna, protein, clf.to(device), weights, opts.random_weights, device, clock.seconds)


class _Warm(threading.Thread):
    """DNABERT-S's first forward step on a GPU loads its Triton kernels and cuBLAS's (0.6 s on an
    H200), host work that can run while ESM-2's weights are read and copied.  Two made-up
    sequences, results dropped; an error here is the first batch's to raise."""

    def __init__(self, dna: embed.Embedder):
        super().__init__(name="virnucpro-warm-dnabert", daemon=True)
        self.dna, self.error = dna, None
        self.start()

    def run(self):
        try:
            self.dna.embed(["ACGT" * 16, "TTGCA" * 30])
        except BaseException as e:  # noqa: BLE001 (kept for join)
            self.error = e

    def join(self, timeout=None):
        super().join(timeout)
        if self.error is not None:
            raise self.error


def _bar(total: int, desc: str, unit: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True)


def classify(data: InputData, models: Models, progress: bool, clock: StageClock, subset=None) -> Prediction:
    orfs = data.orfs if subset is None else [data.orfs[i] for i in subset]
    with _bar(len(orfs), "DNABERT-S", "ORF", progress) as dbar, _bar(len(orfs), "ESM-2", "ORF", progress) as pbar:
        return _classify(orfs, models, clock, dbar.update, pbar.update)


def _classify(orfs, models: Models, clock: StageClock, on_dna=None, on_protein=None, tokens=None) -> Prediction:
    """`tokens`: the ORFs' DNABERT-S and ESM-2 token lists, where the caller made them already."""
    dna_tokens, protein_tokens = tokens or (None, None)
    with clock("dnabert"):
        if dna_tokens is None:
            dna_tokens = models.dna.token_lists([o.nucleotide for o in orfs])
        dna = _finite(models.dna.embed_tokens(dna_tokens, on_batch=on_dna), "DNABERT-S embeddings", orfs)
    faults.point("dnabert")
    trace.mark("dnabert_range_done")
    with clock("esm2"):
        if protein_tokens is None:
            protein_tokens = models.protein.token_lists([o.protein for o in orfs])
        prot = _finite(models.protein.embed_tokens(protein_tokens, on_batch=on_protein), "ESM-2 embeddings", orfs)
    faults.point("esm2")
    trace.mark("esm2_range_done")
    with clock("merge"):
        features = torch.cat([dna, prot], dim=1)
    with clock("predict"), torch.inference_mode():
        logits = in_row_blocks(models.classifier, features.to(models.device)).float().cpu() if orfs \
            else torch.empty(0, 2)
        logits = _finite(logits, "classifier scores", orfs)
        probs = torch.softmax(logits, dim=1)
    faults.point("predict")
    return Prediction(logits.numpy(), probs.numpy(), features.numpy())


def _finite(x: torch.Tensor, what: str, orfs) -> torch.Tensor:
    bad = ~torch.isfinite(x).all(dim=1)
    if bool(bad.any()):
        first = orfs[int(bad.nonzero()[0])].id
        raise NonFiniteError(f"{what} hold NaN or infinite values for {int(bad.sum())} of {len(orfs)} ORFs "
                             f"(first: {first}); the model weights or the precision are broken, nothing was written")
    return x
