"""Stage API: load the embedders and the classifier.

`load_protein_model` / `load_dna_model` return an `Embedder` whose `.embed(list[str])`
gives one float32 row per sequence, in input order, on the CPU.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

import torch

from virnucpro import faults
from virnucpro.errors import InputError, VirnucproError
from virnucpro.models import dnabert, dnabert_load, esm2, esm2_load
from virnucpro.models.classifier_load import MLPClassifier, load_classifier, random_classifier  # noqa: F401
from virnucpro.runner import filled, pack, run_batched

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
DEFAULT_CPU_BUDGET = 16384


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA GPU")
    return dev


def auto_token_budget(model: torch.nn.Module, device: torch.device) -> int:
    """Tokens per forward step.  On a GPU, sized from free memory: activations of one
    layer at a time (inference), roughly 12 x hidden x bytes per token, with half of
    the free memory kept back for the allocator and the other model."""
    if device.type != "cuda":
        return DEFAULT_CPU_BUDGET
    free, _ = torch.cuda.mem_get_info(device)
    hidden = next(p for p in model.parameters() if p.dim() == 2).shape[1]
    per_token = 12 * hidden * 4
    return int(max(4096, min(1 << 20, free * 0.5 // per_token)))


def first_batch_budget(budget: int, device: torch.device) -> int | None:
    """On a GPU, an eighth of the budget for the first batch, so that the GPU starts while the
    host packs the next one (a million tokens take 20 ms on a 2-core host).  Budgets up to 32k
    tokens, such as the reference engine's, keep their batches; so does the CPU, where packing
    cannot overlap and other batches would only move the last bits of the results."""
    if device.type != "cuda":
        return None
    return min(budget, max(budget // 8, 1 << 15))


def compile_layers(model: torch.nn.Module) -> None:
    """torch.compile each transformer layer (one graph serves them all: same code, dynamic token
    count), so that LayerNorm, rotary, GELU and residual adds fuse around the matrix products.
    Attention by sequence length (off the varlen kernel) loops over the batch's lengths: traced,
    it would compile again for every new set of lengths, so it runs eagerly between graphs.
    (Applied here, not where it is defined: torch.compiler.disable imports Dynamo.)"""
    from virnucpro.models import attention

    for name in ("by_length", "per_sequence"):
        if not getattr(getattr(attention, name), "_torchdynamo_disable", False):
            setattr(attention, name, torch.compiler.disable(getattr(attention, name)))
    for layer in model.layers:
        layer.compile(dynamic=True)


class Embedder:
    def __init__(self, model, tokenize: Callable[[Sequence[str]], list[list[int]]], device, info: dict,
                 batch_tokens: int | None = None, compile: bool = False):
        self.model, self.tokenize, self.device, self.info = model, tokenize, torch.device(device), info
        self.dim = int(info["dim"])
        self.row_blocks = True  # steps of whole runner.ROW_BLOCKs (off: the reference engine's batches)
        self.batch_tokens = batch_tokens or auto_token_budget(model, self.device)
        if compile:
            compile_layers(model)
            self.info = {**info, "compiled": True}
            self._warm_compiled()

    def _warm_compiled(self) -> None:
        """Compile for batches of one sequence and of two now: Dynamo specialises a dimension of
        size 1, so a later one-sequence batch (a long protein, the last batch) would otherwise
        compile again in the middle of the run.  "A" is a residue and a base alike."""
        for n in (1, 2):
            self.embed(["A" * 8] * n)

    def token_lists(self, seqs: Sequence[str]) -> list[list[int]]:
        return self.tokenize(list(seqs))

    @torch.inference_mode()
    def embed_tokens(self, token_lists, on_batch=None) -> torch.Tensor:
        pin = self.device.type == "cuda"

        def step(batch):
            faults.point("step")
            # token id 0 (<cls>, [UNK]) for the filler: each filler is a sequence of its own
            tokens, cu, max_len = pack(filled(batch) if self.row_blocks else batch, self.device, pin=pin)
            return self.model.embed_packed(tokens, cu, max_len)[: len(batch)]

        while True:
            done = 0

            def counted(k):
                nonlocal done
                done += k
                if on_batch is not None:
                    on_batch(k)

            try:
                first = first_batch_budget(self.batch_tokens, self.device)
                return run_batched(token_lists, self.batch_tokens, step, self.dim, counted, first)
            except torch.cuda.OutOfMemoryError:
                pass  # retry outside the handler: its traceback holds the failed step's tensors
            self._shrink(max(map(len, token_lists)))
            if on_batch is not None and done:
                on_batch(-done)

    def _shrink(self, longest: int) -> None:
        """Halve the token budget after running out of memory; below the longest sequence
        (a step of one sequence) there is nothing left to halve."""
        if self.batch_tokens <= longest:
            raise VirnucproError(
                f"out of GPU memory on {self.device} even with one sequence ({longest} tokens) per step: the model "
                "does not fit beside what else uses that GPU; free it of other processes, use --precision bf16, "
                "or use a GPU with more memory")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        new = max(self.batch_tokens // 2, longest)
        print(f"virnucpro: out of GPU memory at {self.batch_tokens} tokens per step, retrying with {new} "
              f"(--batch-tokens {new} starts there)", file=sys.stderr)
        self.batch_tokens = new

    def embed(self, seqs: Sequence[str], on_batch=None) -> torch.Tensor:
        return self.embed_tokens(self.token_lists(seqs), on_batch)


def load_protein_model(source: str, device="cpu", precision: str = "fp32", seed: int = 0,
                       batch_tokens: int | None = None, compile: bool = False) -> Embedder:
    device = resolve_device(device) if isinstance(device, str) else device
    model, info = esm2_load.load_esm2(source, device=device, dtype=PRECISIONS[precision], seed=seed)
    model.eval()
    info = {**info, "precision": precision}
    return Embedder(model, esm2.tokenize, device, info, batch_tokens, compile)


def load_dna_model(source: str, device="cpu", precision: str = "fp32", seed: int = 0,
                   batch_tokens: int | None = None, compile: bool = False) -> Embedder:
    device = resolve_device(device) if isinstance(device, str) else device
    model, tok, info = dnabert_load.load_dnabert(source, device=device, dtype=PRECISIONS[precision], seed=seed)
    model.eval()
    info = {**info, "precision": precision}
    return Embedder(model, lambda seqs: dnabert.tokenize(tok, seqs), device, info, batch_tokens, compile)
