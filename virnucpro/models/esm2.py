"""ESM-2 protein language model, inference only, on packed batches.

The same numbers as fair-esm's `ESM2` (pre-LN transformer, rotary attention, token-dropout
rescaling of the embeddings), but sequences are laid end to end without padding: linear
layers see [T, D], attention sees one sequence at a time through `packed_attention`.
Module names follow fair-esm so that its checkpoints load key for key (esm2_load.py reads
them).  No LM head and no contact head: only embeddings are needed.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from virnucpro import settings
from virnucpro.models import fused
from virnucpro.models.attention import length_groups, packed_attention, token_index
from virnucpro.models.pooling import segment_sums
from virnucpro.models.random_init import embedding
from virnucpro.runner import pack  # noqa: F401  (part of this module's API)
from virnucpro.settings import ESM_ROTARY_ENV as ROTARY_ENV  # noqa: F401  (part of this module's API)

# fair-esm's "ESM-1b" alphabet: 4 specials, 27 residue letters, one filler to reach a multiple of 8, mask.
ALPHABET = ("<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>")
CLS, PAD, EOS, UNK, MASK = (ALPHABET.index(t) for t in ("<cls>", "<pad>", "<eos>", "<unk>", "<mask>"))
MASK_RATIO_TRAIN = 0.15 * 0.8  # share of tokens that were masked during ESM-2 training


class _Codes(dict):
    # str.translate looks missing characters up here, so any unknown letter becomes <unk>.
    def __missing__(self, key: int) -> int:
        return UNK


_CODES = _Codes({ord(t): i for i, t in enumerate(ALPHABET) if len(t) == 1})


def tokenize(proteins: list[str]) -> list[list[int]]:
    """`<cls> residues <eos>` per protein.  Letters outside the alphabet (lower case, '*', 'J')
    become `<unk>` one for one; fair-esm's own encoder would raise on them instead."""
    return [[CLS, *p.translate(_CODES).encode("latin-1"), EOS] for p in proteins]


@dataclass(frozen=True)
class ESM2Config:
    num_layers: int
    embed_dim: int
    attention_heads: int
    token_dropout: bool = True
    layer_norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.attention_heads


def default_inv_freq(head_dim: int, device=None) -> torch.Tensor:
    return 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))


def rotary_kernel() -> str:
    """ESM-2's rotary on a GPU, from VIRNUCPRO_ESM_ROTARY: "auto" (default: "triton" where Triton
    imports, else "inductor"), "triton" (rotary_triton.py: as fast, and no torch.compile in the
    process; docs/PERFORMANCE.md) or "inductor" (fused.rotary, compiled by torch.compile)."""
    value = settings.esm_rotary()
    if value == "auto":
        return "triton" if _have_triton() else "inductor"
    return value


@functools.lru_cache(maxsize=1)
def _have_triton() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def _add_and_norm(x: torch.Tensor, y: torch.Tensor, norm: nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + y, norm(x + y)): one Triton kernel where it runs, else PyTorch's two."""
    if _have_triton():
        from virnucpro.models import fused_triton

        if fused_triton.runs_on(x.device):
            return fused_triton.add_and_norm(x, y, norm.weight, norm.bias, norm.eps)
    s = x + y
    return s, norm(s)


def _fc1_gelu(h: torch.Tensor, fc1: nn.Linear) -> torch.Tensor:
    """gelu(fc1(h)), the tanh form: in the GEMM's epilogue on a GPU (cuBLASLt), the same function
    elsewhere, so that a CPU test sees the numbers a GPU gives."""
    if h.is_cuda:
        return torch._addmm_activation(fc1.bias, h, fc1.weight.t(), use_gelu=True)
    return F.gelu(F.linear(h, fc1.weight, fc1.bias), approximate="tanh")


class PackedBatch:
    """One forward step's packed batch, built once and handed to every layer: the tokens,
    `cu_seqlens` and the longest length, each token's sequence and position (also what padded
    attention needs), and the rotary cos/sin tables, [T, 1, Dh/2] in fp32: position * inv_freq
    must stay exact for long proteins, and sin and cos of large angles are costly."""

    def __init__(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, inv_freq: torch.Tensor):
        self.tokens, self.cu_seqlens, self.max_seqlen = tokens, cu_seqlens, max_seqlen
        self.seq, self.pos = token_index(cu_seqlens, tokens.numel())
        angle = self.pos[:, None, None].float() * inv_freq.float()
        self.cos, self.sin = angle.cos(), angle.sin()
        self.triton_rotary = tokens.is_cuda and rotary_kernel() == "triton"

    @property
    def token_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.seq, self.pos

    @functools.cached_property
    def length_groups(self):
        """For attention off the varlen kernel, once per step (never built on that kernel's path)."""
        return length_groups(self.cu_seqlens)


class Rotary(nn.Module):
    """Holds the rotary frequencies (a checkpoint's per-layer copy); the tables come from the batch."""

    def __init__(self, head_dim: int, device=None):
        super().__init__()
        # fp32 in every model dtype: position * inv_freq must stay exact for long proteins.
        self.register_buffer("inv_freq", torch.empty(head_dim // 2, dtype=torch.float32, device=device))
        if self.inv_freq.device.type != "meta":  # meta math runs torch's Python references (Dynamo's import)
            self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        self.inv_freq.copy_(default_inv_freq(2 * self.inv_freq.numel(), self.inv_freq.device))

    def forward(self, q: torch.Tensor, k: torch.Tensor, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.triton_rotary:
            from virnucpro.models import rotary_triton

            return rotary_triton.rotary_(q, k, batch.cos, batch.sin)
        return fused.rotary(q, k, batch.cos, batch.sin)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ESM2Config, **factory):
        super().__init__()
        d = cfg.embed_dim
        self.heads, self.head_dim = cfg.attention_heads, cfg.head_dim
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d, **factory) for _ in range(4))
        self.rot_emb = Rotary(cfg.head_dim, device=factory.get("device"))

    def forward(self, x: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        shape = (x.shape[0], self.heads, self.head_dim)
        q, k = self.rot_emb(self.q_proj(x).view(shape), self.k_proj(x).view(shape), batch)
        out = packed_attention(q, k, self.v_proj(x).view(shape), batch.cu_seqlens, batch.max_seqlen,
                               lambda: batch.length_groups)
        return self.out_proj(out.reshape(x.shape))


class Layer(nn.Module):
    def __init__(self, cfg: ESM2Config, **factory):
        super().__init__()
        d, eps = cfg.embed_dim, cfg.layer_norm_eps
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps, **factory)
        self.self_attn = SelfAttention(cfg, **factory)
        self.final_layer_norm = nn.LayerNorm(d, eps=eps, **factory)
        self.fc1 = nn.Linear(d, 4 * d, **factory)
        self.fc2 = nn.Linear(4 * d, d, **factory)

    def forward(self, x: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        # LayerNorm, GELU and the residual adds stay eager: on an H200 Inductor's fused versions
        # of them measured slower than PyTorch's own kernels.
        x = x + self.self_attn(self.self_attn_layer_norm(x), batch)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class ESM2(nn.Module):
    def __init__(self, cfg: ESM2Config, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.cfg = cfg
        # First parameter on purpose: the embedder reads the hidden size from the first matrix.
        self.embed_tokens = embedding(len(ALPHABET), cfg.embed_dim, padding_idx=PAD, **factory)
        self.layers = nn.ModuleList(Layer(cfg, **factory) for _ in range(cfg.num_layers))
        self.emb_layer_norm_after = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps, **factory)

    def packed_batch(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> PackedBatch:
        # Every layer holds the same frequencies (esm2_load checks it), so one table serves all.
        return PackedBatch(tokens, cu_seqlens, max_seqlen, self.layers[0].self_attn.rot_emb.inv_freq)

    def forward(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        """Last hidden state [T, D] (after the final LayerNorm) of packed `<cls> ... <eos>` sequences."""
        return self.hidden(self.packed_batch(tokens, cu_seqlens, max_seqlen))

    def hidden(self, batch: PackedBatch) -> torch.Tensor:
        x = self.embed_tokens(batch.tokens)
        if self.cfg.token_dropout:
            x = self._undo_token_dropout(x, batch)
        if settings.esm_layer() == "fused":
            return self._hidden_fused(x, batch)
        for layer in self.layers:
            x = layer(x, batch)
        return self.emb_layer_norm_after(x)

    def _hidden_fused(self, x: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        """VIRNUCPRO_ESM_LAYER=fused, the same layers: every residual add is done by the kernel of
        the LayerNorm after it, which writes both (the second add of a layer goes with the next
        layer's first LayerNorm, or the final one), and fc1 adds its bias and GELU in its GEMM's
        epilogue (cuBLASLt's GELU is the tanh form: numbers within the fair-esm tolerance, tested)."""
        layers = self.layers
        h = layers[0].self_attn_layer_norm(x)
        for i, layer in enumerate(layers):
            x, h = _add_and_norm(x, layer.self_attn(h, batch), layer.final_layer_norm)
            after = layers[i + 1].self_attn_layer_norm if i + 1 < len(layers) else self.emb_layer_norm_after
            x, h = _add_and_norm(x, layer.fc2(_fc1_gelu(h, layer.fc1)), after)
        return h

    @staticmethod
    def _undo_token_dropout(x: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        # ESM-2 was trained with masked tokens zeroed; at inference its embeddings are scaled to the
        # same expected norm: by 0.88, or more when a sequence does contain <mask> tokens.
        masked = batch.tokens == MASK
        x = x.masked_fill(masked[:, None], 0.0)
        cu = batch.cu_seqlens.long()
        # Sums of 0s and 1s: exact in any order, so index_add_'s atomics cannot move them.
        n_masked = torch.zeros(cu.numel() - 1, device=x.device).index_add_(0, batch.seq, masked.float())
        observed = n_masked / (cu[1:] - cu[:-1])  # counted in fp32: bf16 cannot hold lengths above 256
        return x * (1 - MASK_RATIO_TRAIN) / (1 - observed).to(x.dtype)[batch.seq, None]

    def embed_packed(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        """Per-sequence mean of the last layer over the residues (<cls>/<eos> left out): [B, D] float32.
        A protein without residues gets zeros, where fair-esm's mean would give NaN."""
        batch = self.packed_batch(tokens, cu_seqlens, max_seqlen)
        hidden = self.hidden(batch).float()
        cu = cu_seqlens.long()
        lengths = cu[1:] - cu[:-1]
        special = (batch.pos == 0) | (batch.pos == lengths[batch.seq] - 1)
        sums = segment_sums(hidden.masked_fill(special[:, None], 0.0), lengths)
        return sums / (lengths - 2).clamp(min=1)[:, None].float()

    @torch.no_grad()
    def reset_rotary(self) -> None:
        for layer in self.layers:
            layer.self_attn.rot_emb.reset()


def param_bytes(cfg: ESM2Config, dtype: torch.dtype) -> int:
    """Bytes of the model's weights, counted from the config: nothing is built to know it."""
    d = cfg.embed_dim
    per_layer = 4 * (d * d + d) + 4 * d + (4 * d * d + 4 * d) + (4 * d * d + d)
    return (len(ALPHABET) * d + cfg.num_layers * per_layer + 2 * d) * torch.empty(0, dtype=dtype).element_size()
