"""DNABERT-S (a MosaicBERT: ALiBi attention, GLU feed-forward, post-LN), inference only.

Batches are packed: B sequences concatenated into T tokens with `cu_seqlens`, so the
linear layers never see padding.  `embed_packed` gives what the original VirNucPro
computes per sequence: the mean of the last hidden state over all of its tokens,
[CLS] and [SEP] included.  dnabert_load.py reads checkpoints and the tokenizer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from tokenizers import Tokenizer

from virnucpro.models import fused
from virnucpro.models.alibi import PackedLayout, alibi_slopes, dna_attention, dna_backend, packed_alibi_attention
from virnucpro.models.pooling import segment_sums
from virnucpro.models.random_init import embedding
from virnucpro.runner import pack  # noqa: F401  (re-exported: tokens -> packed batch)


class Layer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, eps: float, **factory):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, **factory)
        self.attn_out = nn.Linear(dim, dim, **factory)
        self.attn_norm = nn.LayerNorm(dim, eps=eps, **factory)
        self.gated = nn.Linear(dim, 2 * hidden, bias=False, **factory)
        self.wo = nn.Linear(hidden, dim, **factory)
        self.mlp_norm = nn.LayerNorm(dim, eps=eps, **factory)

    def forward(self, x: torch.Tensor, layout: PackedLayout, slopes: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        T, D = x.shape
        q, k, v = self.qkv(x).view(T, 3, self.heads, D // self.heads).unbind(1)
        a = packed_alibi_attention(q, k, v, layout.cu_seqlens, layout.max_seqlen, slopes, layout=layout,
                                   backend=backend)
        tri = backend == "triton"  # then no torch.compile at all, also around the attention
        x = fused.add_norm(x, self.attn_out(a.reshape(T, D)), self.attn_norm, triton=tri)
        return fused.add_norm(x, self.wo(fused.geglu(self.gated(x), triton=tri)), self.mlp_norm, triton=tri)


@dataclass(frozen=True)
class DNABERTConfig:
    num_layers: int = 12
    hidden_size: int = 768
    num_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 4096
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    def param_count(self) -> int:
        """Weights of the model this config describes, counted without building it."""
        d, h = self.hidden_size, self.intermediate_size
        per_layer = (3 * d * d + 3 * d) + (d * d + d) + 2 * d + 2 * h * d + (h * d + d) + 2 * d
        return (self.vocab_size + self.type_vocab_size) * d + 2 * d + self.num_layers * per_layer


class DNABERTS(nn.Module):
    def __init__(self, cfg: DNABERTConfig = DNABERTConfig(), device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.cfg = cfg
        num_layers, hidden_size, num_heads = cfg.num_layers, cfg.hidden_size, cfg.num_heads
        intermediate_size, layer_norm_eps = cfg.intermediate_size, cfg.layer_norm_eps
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of {num_heads} heads")
        dna_attention()  # a bad VIRNUCPRO_DNA_ATTENTION fails at load, before anything is written
        self.num_heads, self.dim = num_heads, hidden_size
        self.embed = embedding(cfg.vocab_size, hidden_size, **factory)
        # Every token has type 0; the table is kept so that checkpoints load unchanged.
        self.token_type = embedding(cfg.type_vocab_size, hidden_size, **factory)
        self.embed_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps, **factory)
        self.layers = nn.ModuleList(
            Layer(hidden_size, num_heads, intermediate_size, layer_norm_eps, **factory) for _ in range(num_layers)
        )

    def forward(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        """tokens [T] -> last hidden state [T, D]."""
        x = self.embed_norm(self.embed(tokens) + self.token_type.weight[0])
        layout = PackedLayout(cu_seqlens, max_seqlen, tokens.shape[0])
        slopes = alibi_slopes(self.num_heads, device=tokens.device)
        backend = dna_backend(x.device, x.dtype)
        for layer in self.layers:
            x = layer(x, layout, slopes, backend)
        return x

    def embed_packed(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        """[B, D] float32: per-sequence mean of the last hidden state, summed in fp32."""
        h = self(tokens, cu_seqlens, max_seqlen).float()
        lengths = cu_seqlens.long().diff()
        return segment_sums(h, lengths) / lengths[:, None].float()


def tokenize(tok: Tokenizer, seqs: list[str]) -> list[list[int]]:
    """Token ids per sequence, [CLS] and [SEP] included."""
    return [e.ids for e in tok.encode_batch(list(seqs))]
