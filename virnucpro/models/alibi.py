"""Bidirectional attention with ALiBi over packed batches (MosaicBERT / DNABERT-S).

A packed batch is B sequences concatenated into T tokens, delimited by
`cu_seqlens` ([0, len0, len0+len1, ..., T]).  Every token attends to every token of
its own sequence with the score bias -slope_h * |i - j|; there are no position
embeddings, so this bias is the only place where order enters the model.

Three implementations:
- A Triton kernel of our own (alibi_triton.py, CUDA): reads q, k, v where the projection wrote
  them and needs no torch.compile; `VIRNUCPRO_DNA_ATTENTION` (see `dna_attention`) picks it.
- FlexAttention (CUDA in bf16/fp16 or TF32, see `flex_suits`): one [1, H, T, Dh]
  problem with a block-sparse document mask, so no padding and no work between
  sequences.
- Off those (the CPU, fp32 on a GPU, or when flex fails): on the CPU one sequence at a time
  (attention.per_sequence, ALiBi added to the scores), so that a sequence's bits do not depend on
  its batch; on a GPU SDPA once per sequence length, [B_L, H, L, Dh] with ALiBi as a float bias.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
from functools import cached_property

import torch
import torch.nn.functional as F

from virnucpro import settings
from virnucpro.errors import VirnucproError
from virnucpro.models import attention, fused
from virnucpro.models.attention import length_groups
from virnucpro.settings import DNA_ATTENTION_ENV, dna_attention  # noqa: F401  (part of this module's API)

log = logging.getLogger(__name__)


def flex_block() -> int:
    """Sparsity granule of the flex block mask, and the kernel's tiles (VIRNUCPRO_FLEX_BLOCK).
    ORFs are about 100 DNABERT-S tokens, so most scores of flex's default 128 x 128 blocks would
    be masked out."""
    return settings.models().flex_block


def alibi_slopes(n_heads: int, device=None) -> torch.Tensor:
    """MosaicBERT's head slopes.  For a power of two n they are 2^(-8k/n), k = 1..n; for
    other n, those of the largest power of two below n, followed by every other slope
    of twice that power, so that the extra heads interleave between the first ones."""

    def power_of_2(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (k + 1) for k in range(n)]

    def slopes(n: int) -> list[float]:
        if math.log2(n).is_integer():
            return power_of_2(n)
        p = 2 ** math.floor(math.log2(n))
        return power_of_2(p) + slopes(2 * p)[0::2][: n - p]

    return torch.tensor(slopes(n_heads), dtype=torch.float32, device=device)


class PackedLayout:
    """Index tensors for one packed batch, built lazily and shared by all layers."""

    def __init__(self, cu_seqlens: torch.Tensor, max_seqlen: int, total: int):
        self.cu_seqlens = cu_seqlens.long()
        self.max_seqlen = int(max_seqlen)
        self.total = int(total)
        self.num_seqs = cu_seqlens.numel() - 1
        self._bias: dict = {}

    @cached_property
    def lengths(self) -> torch.Tensor:
        return self.cu_seqlens.diff()

    @cached_property
    def seq_id(self) -> torch.Tensor:
        ids = torch.arange(self.num_seqs, device=self.cu_seqlens.device)
        # output_size spares a device->host sync to learn T.
        return torch.repeat_interleave(ids, self.lengths, output_size=self.total)

    @cached_property
    def triton_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """cu_seqlens and seq_id in int32, as the Triton kernel reads them."""
        return self.cu_seqlens.to(torch.int32), self.seq_id.to(torch.int32)

    @cached_property
    def pos(self) -> torch.Tensor:
        return torch.arange(self.total, device=self.cu_seqlens.device) - self.cu_seqlens[self.seq_id]

    @cached_property
    def length_groups(self):
        return length_groups(self.cu_seqlens)

    def alibi_bias(self, n: int, slopes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[H, n, n]: ALiBi of a sequence of n tokens, computed in fp32 and rounded once to dtype."""
        key = (n, slopes.data_ptr(), dtype)
        if key not in self._bias:
            r = torch.arange(n, device=slopes.device)
            self._bias[key] = (-slopes[:, None, None] * (r[:, None] - r[None, :]).abs()).to(dtype)
        return self._bias[key]

    @cached_property
    def block_mask(self):
        """Flex block mask built straight from cu_seqlens in O(T / block): query block i
        can only see the key blocks from the start of its first token's sequence to the
        end of its last token's sequence.  (`create_block_mask` would evaluate the mask
        on all T x T pairs.)  All listed blocks count as partial, so the mask_mod below
        is applied everywhere; ORF sequences are shorter than one block anyway."""
        from torch.nn.attention.flex_attention import BlockMask

        T, cu, seq_id, block = self.total, self.cu_seqlens, self.seq_id, flex_block()
        n_blocks = -(-T // block)
        starts = torch.arange(n_blocks, device=cu.device) * block
        first = seq_id[starts]
        last = seq_id[(starts + block).clamp(max=T) - 1]
        lo = cu[first] // block
        hi = (cu[last + 1] - 1) // block
        # Only the first (hi - lo + 1) entries of a row are read, but Inductor wants
        # rows as wide as the key blocks (n_blocks^2 int32: 1 GiB at 1M tokens in 64-token blocks).
        idx = (lo[:, None] + torch.arange(n_blocks, device=cu.device)).clamp(max=n_blocks - 1)
        ids = seq_id.to(torch.int32)

        def same_sequence(b, h, q_idx, kv_idx):
            return ids[q_idx] == ids[kv_idx]

        return BlockMask.from_kv_blocks(
            (hi - lo + 1).to(torch.int32)[None, None], idx.to(torch.int32)[None, None],
            BLOCK_SIZE=block, mask_mod=same_sequence, seq_lengths=(T, T), compute_q_blocks=False,
        )


def sdpa_alibi_attention(q, k, v, layout: PackedLayout, slopes: torch.Tensor) -> torch.Tensor:
    """One sequence at a time on the CPU (attention.per_sequence): a sequence's bits depend on it
    alone; SDPA once per sequence length on a GPU (attention.by_length)."""
    if not q.is_cuda:
        return attention.per_sequence(q, k, v, lambda: layout.length_groups,
                                      lambda n: layout.alibi_bias(n, slopes, q.dtype))

    def attend(qg, kg, vg, n):
        return F.scaled_dot_product_attention(qg, kg, vg, attn_mask=layout.alibi_bias(n, slopes, q.dtype))

    return attention.by_length(q, k, v, lambda: layout.length_groups, attend)


_compiled_flex: dict = {}


def _flex(device_type: str):
    if device_type not in _compiled_flex:
        from torch.nn.attention.flex_attention import flex_attention

        # On CPU (torch 2.13) the dynamic-shape recompile that a second batch size
        # triggers fails in Inductor's C++ codegen, so CPU compiles per shape.
        dynamic = False if device_type == "cpu" else None
        _compiled_flex[device_type] = torch.compile(flex_attention, dynamic=dynamic)
    return _compiled_flex[device_type]


@contextlib.contextmanager
def flex_function(device_type: str, fn):
    """Run flex attention on `device_type` through `fn` for the duration of a `with` block (tests
    run the uncompiled `flex_attention`, which checks the score and mask functions without a
    minute-long CPU compilation)."""
    saved = _compiled_flex.get(device_type)
    _compiled_flex[device_type] = fn
    try:
        yield
    finally:
        if saved is None:
            _compiled_flex.pop(device_type, None)
        else:
            _compiled_flex[device_type] = saved


def flex_alibi_attention(q, k, v, layout: PackedLayout, slopes: torch.Tensor) -> torch.Tensor:
    def alibi(score, b, h, q_idx, kv_idx):
        # The mask keeps only pairs of one sequence, where the packed distance is the
        # distance within the sequence.
        return score - slopes[h] * (q_idx - kv_idx).abs()

    # Contiguous copies, also on the GPU: with q, k, v as strided views of the Wqkv output the
    # flex kernel ran 4x slower (H200), and Inductor's CPU lowering refuses such views outright.
    q, k, v = fused.heads_first(q, k, v)
    block = flex_block()
    options = {"BLOCK_M": block, "BLOCK_N": block} if block < 128 and q.is_cuda else None
    out = _flex(q.device.type)(q, k, v, score_mod=alibi, block_mask=layout.block_mask, kernel_options=options)
    return fused.tokens_first(out[0])


_flex_failed = False


def flex_suits(device_type: str, dtype: torch.dtype, head_dim: int) -> bool:
    """Whether "auto" picks flex.  Measured on an H200 (torch 2.11, 93k tokens, 12 x 64
    heads): bf16 flex 1.6 ms against 2.35 ms for SDPA, but in strict fp32 flex takes
    118 ms against 4.7 ms (its fp32 dots are slow without TF32).  Triton's kernel
    needs head_dim >= 16."""
    return device_type == "cuda" and head_dim >= 16 and _fast_dtype(dtype) and not _flex_failed


def _fast_dtype(dtype: torch.dtype) -> bool:
    return dtype in (torch.bfloat16, torch.float16) or torch.get_float32_matmul_precision() != "highest"


@functools.lru_cache(maxsize=None)
def _triton_kernels():
    """alibi_triton, or the reason it cannot be imported."""
    try:
        from virnucpro.models import alibi_triton
    except Exception as e:  # triton missing, or too old for the kernel
        return None, f"{type(e).__name__}: {e}"
    return alibi_triton, None


def dna_backend(device: torch.device, dtype: torch.dtype) -> str:
    """The `packed_alibi_attention` backend that DNABERT-S uses on this device: "triton" or "auto".

    VIRNUCPRO_DNA_ATTENTION (settings.dna_attention): "auto" (default: Triton where it can be
    imported and the dtype is fast, as for flex; else as "flex"), "flex" (FlexAttention where
    `flex_suits`, else SDPA) or "triton" (the Triton kernel on CUDA, and no torch.compile anywhere
    in DNABERT-S; an error where Triton cannot be imported).  The Triton kernel is the default
    because it needs no per-process compilation and measured faster (docs/PERFORMANCE.md)."""
    setting = dna_attention()
    # "auto" takes the kernel on a GPU only: Triton's interpreter (TRITON_INTERPRET=1, for tests)
    # would otherwise slip it into every CPU run.
    if setting == "flex" or (setting == "auto" and device.type != "cuda"):
        return "auto"
    kernels, why = _triton_kernels()
    if kernels is None:
        if setting == "triton":
            raise VirnucproError(f"{DNA_ATTENTION_ENV}=triton, but Triton cannot be used here ({why}); "
                                 f"install triton, or set {DNA_ATTENTION_ENV}=flex")
        return "auto"
    if not kernels.runs_on(device):
        return "auto"
    if setting == "auto" and not _fast_dtype(dtype):
        return "auto"
    return "triton"


def packed_alibi_attention(q, k, v, cu_seqlens, max_seqlen, slopes, *, layout: PackedLayout | None = None,
                           backend: str = "auto") -> torch.Tensor:
    """q, k, v: [T, H, Dh] -> [T, H, Dh].  backend: "auto" (see `flex_suits`),
    "flex" (also on CPU, for tests), "sdpa" or "triton" (alibi_triton.py; errors propagate).
    A flex failure is logged once and the SDPA path is used from then on, unless flex was
    asked for by name."""
    global _flex_failed
    if layout is None:
        layout = PackedLayout(cu_seqlens, max_seqlen, q.shape[0])
    if backend == "triton":
        from virnucpro.models import alibi_triton

        cu, seq = layout.triton_index
        return alibi_triton.packed_alibi_attention(q, k, v, cu, slopes, seq)
    if backend == "flex" or (backend == "auto" and flex_suits(q.device.type, q.dtype, q.shape[-1])):
        try:
            return flex_alibi_attention(q, k, v, layout, slopes)
        except Exception as e:
            if backend == "flex":
                raise
            _flex_failed = True
            log.warning("flex_attention failed (%s: %s); using SDPA attention", type(e).__name__, e)
    elif backend not in ("auto", "sdpa"):
        raise ValueError(f"unknown attention backend {backend!r}")
    return sdpa_alibi_attention(q, k, v, layout, slopes)
