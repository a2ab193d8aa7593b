"""DNABERT-S (a MosaicBERT: ALiBi attention, GLU feed-forward, post-LN), inference only.

Batches are packed: B sequences concatenated into T tokens with `cu_seqlens`, so the
linear layers never see padding.  `embed_packed` gives what the original VirNucPro
computes per sequence: the mean of the last hidden state over all of its tokens,
[CLS] and [SEP] included.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn as nn
from tokenizers import Tokenizer

from virnucpro.errors import ModelLoadError
from virnucpro.models import fused
from virnucpro.models.hub import (check_fits, config_int, first_line, hf_cache_roots, hf_snapshots, read_json_object,
                                  torch_load)
from virnucpro.models.alibi import PackedLayout, alibi_slopes, dna_attention, dna_backend, packed_alibi_attention
from virnucpro.models.pooling import segment_sums
from virnucpro.presets import PRESETS
from virnucpro.runner import pack  # noqa: F401  (re-exported: tokens -> packed batch)

HF_NAME = "zhihan1996/DNABERT-S"
STAND_IN_TOKENIZER = Path(__file__).resolve().parents[1] / "data" / "dna_tokenizer.json"


class Layer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, eps: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_out = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.gated = nn.Linear(dim, 2 * hidden, bias=False)
        self.wo = nn.Linear(hidden, dim)
        self.mlp_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, layout: PackedLayout, slopes: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        T, D = x.shape
        q, k, v = self.qkv(x).view(T, 3, self.heads, D // self.heads).unbind(1)
        a = packed_alibi_attention(q, k, v, layout.cu_seqlens, layout.max_seqlen, slopes, layout=layout,
                                   backend=backend)
        tri = backend == "triton"  # then no torch.compile at all, also around the attention
        x = fused.add_norm(x, self.attn_out(a.reshape(T, D)), self.attn_norm, triton=tri)
        return fused.add_norm(x, self.wo(fused.geglu(self.gated(x), triton=tri)), self.mlp_norm, triton=tri)


class DNABERTS(nn.Module):
    def __init__(self, num_layers: int = 12, hidden_size: int = 768, num_heads: int = 12,
                 intermediate_size: int = 3072, vocab_size: int = 4096, type_vocab_size: int = 2,
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of {num_heads} heads")
        dna_attention()  # a bad VIRNUCPRO_DNA_ATTENTION fails at load, before anything is written
        self.num_heads, self.dim = num_heads, hidden_size
        self.embed = nn.Embedding(vocab_size, hidden_size)
        # Every token has type 0; the table is kept so that checkpoints load unchanged.
        self.token_type = nn.Embedding(type_vocab_size, hidden_size)
        self.embed_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.layers = nn.ModuleList(
            Layer(hidden_size, num_heads, intermediate_size, layer_norm_eps) for _ in range(num_layers)
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


# ---------------------------------------------------------------- checkpoints

# MosaicBERT key (without "bert.") -> ours.  Pooler and MLM-head weights are unused.
_RENAMES = [
    (r"embeddings\.word_embeddings\.", "embed."),
    (r"embeddings\.token_type_embeddings\.", "token_type."),
    (r"embeddings\.LayerNorm\.", "embed_norm."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.Wqkv\.", r"layers.\1.qkv."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attn_out."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.attn_norm."),
    (r"encoder\.layer\.(\d+)\.mlp\.gated_layers\.", r"layers.\1.gated."),
    (r"encoder\.layer\.(\d+)\.mlp\.wo\.", r"layers.\1.wo."),
    (r"encoder\.layer\.(\d+)\.mlp\.layernorm\.", r"layers.\1.mlp_norm."),
]
_IGNORED = re.compile(r"(pooler|cls)\.")


def convert_state_dict(state: dict[str, torch.Tensor], where: Path | str = "") -> dict[str, torch.Tensor]:
    out, unknown = {}, []
    for key, value in state.items():
        key = key.removeprefix("bert.")
        if _IGNORED.match(key):
            continue
        for pattern, repl in _RENAMES:
            new, n = re.subn("^" + pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ModelLoadError(f"{where or 'checkpoint'}: unexpected DNABERT-S weights: {', '.join(unknown[:5])}")
    return out


def config_from_json(path: Path) -> dict:
    cfg = read_json_object(path, "model config")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ModelLoadError(f"{path}: hidden_act {cfg['hidden_act']!r} is not supported (expected gelu)")
    keys = dict(num_layers="num_hidden_layers", hidden_size="hidden_size", num_heads="num_attention_heads",
                intermediate_size="intermediate_size", vocab_size="vocab_size")
    out = {ours: config_int(cfg, theirs, path) for ours, theirs in keys.items()}
    out["type_vocab_size"] = config_int(cfg, "type_vocab_size", path, 2)
    eps = cfg.get("layer_norm_eps", 1e-12)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 <= eps < 1:
        raise ModelLoadError(f"{path}: 'layer_norm_eps' must be a small number, found {json.dumps(eps)}")
    if out["hidden_size"] % out["num_heads"]:
        raise ModelLoadError(f"{path}: hidden_size {out['hidden_size']} does not split into "
                             f"{out['num_heads']} attention heads")
    return {**out, "layer_norm_eps": float(eps)}


def param_count(num_layers: int, hidden_size: int, intermediate_size: int, vocab_size: int,
                type_vocab_size: int = 2, **_) -> int:
    """Weights of the model a config describes, counted without building it."""
    d, h = hidden_size, intermediate_size
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + 2 * d + 2 * h * d + (h * d + d) + 2 * d
    return (vocab_size + type_vocab_size) * d + 2 * d + num_layers * per_layer


def weights_file(folder: Path) -> Path:
    st = folder / "model.safetensors"
    return st if st.is_file() else folder / "pytorch_model.bin"


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    st = pt = weights_file(folder)
    if st.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            if st.stat().st_size == 0:
                raise ValueError("the file is empty")
            return load_file(str(st))
        except Exception as e:
            raise ModelLoadError(f"{st}: not a readable safetensors file ({first_line(e)})") from None
    state = torch_load(pt, [], "DNABERT-S checkpoint")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{pt}: expected a state dict of tensors, found a {type(state).__name__}")
    return state


def _check_shapes(model: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    target = model.state_dict()
    missing, unexpected = sorted(set(target) - set(state)), sorted(set(state) - set(target))
    if missing or unexpected:
        raise ModelLoadError(f"{where}: the weights do not fit config.json (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
    for k, v in state.items():
        if v.shape != target[k].shape:
            raise ModelLoadError(f"{where}: the weights do not fit config.json ({k} has shape {tuple(v.shape)}, "
                                 f"the config asks for {tuple(target[k].shape)})")


def _is_snapshot(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (
        (folder / "model.safetensors").is_file() or (folder / "pytorch_model.bin").is_file())


def find_snapshot(source: str) -> Path:
    """A folder as given, else a model name in the Hugging Face cache."""
    looked = []
    folder = Path(source).expanduser()
    if folder.is_dir() and _is_snapshot(folder):
        return folder
    looked.append(str(folder))
    if "/" in source and not source.startswith((".", "/", "~")):
        repo = "models--" + source.replace("/", "--")
        for cache in hf_cache_roots():
            snaps = hf_snapshots(cache / repo, _is_snapshot)
            if snaps:
                return snaps[0]
            looked.append(str(cache / repo / "snapshots" / "*"))
    raise ModelLoadError(
        f"DNABERT-S weights not found for {source!r}; looked in: {'; '.join(looked)}. "
        f"A snapshot folder needs config.json, pytorch_model.bin or model.safetensors, and tokenizer.json. "
        f"To get it, run `huggingface-cli download {HF_NAME}` on a machine with network access "
        f"and pass the downloaded folder (or copy the Hugging Face cache over), "
        f"or use random:tiny / random:full for untrained weights"
    )


def load_tokenizer(path: Path) -> Tokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:
        raise ModelLoadError(f"{path}: cannot read tokenizer ({first_line(e)})") from None
    # The published file pads and truncates to 2000; VirNucPro encodes one sequence
    # at a time, which means neither.
    tok.no_padding()
    tok.no_truncation()
    return tok


def tokenize(tok: Tokenizer, seqs: list[str]) -> list[list[int]]:
    """Token ids per sequence, [CLS] and [SEP] included."""
    return [e.ids for e in tok.encode_batch(list(seqs))]


def _random_init_(model: DNABERTS, seed: int, device: torch.device) -> None:
    gen = torch.Generator(device=device).manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.normal_(0.0, 0.02, generator=gen)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()


def load_dnabert(source: str, device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """-> (model in eval mode, tokenizer, info).  `source`: a snapshot folder, a Hugging
    Face model name looked up in the local cache, or `random:<preset>`."""
    device = torch.device(device)
    if source.startswith("random:"):
        preset = source.split(":", 1)[1]
        if preset not in PRESETS:
            raise ModelLoadError(f"unknown preset {preset!r} in {source!r}; choose from {', '.join(PRESETS)}")
        cfg = PRESETS[preset]["dnabert"]
        with torch.device("meta"):
            model = DNABERTS(**cfg).to(dtype)
        # Materialise straight on the target device: a full model never passes through host memory.
        model.to_empty(device=device)
        with torch.no_grad():
            _random_init_(model, seed, device)
        tok_path, kind, info_src = STAND_IN_TOKENIZER, "random", source
    else:
        folder = find_snapshot(source)
        tok_path = folder / "tokenizer.json"
        if not tok_path.is_file():
            raise ModelLoadError(f"{folder}: tokenizer.json is missing")
        cfg = config_from_json(folder / "config.json")
        check_fits(param_count(**cfg) * torch.empty(0, dtype=dtype).element_size(), device, folder / "config.json",
                   f"{cfg['num_layers']}-layer, {cfg['hidden_size']}-wide DNABERT-S")
        state = convert_state_dict(_read_weights(folder), weights_file(folder))
        with torch.device("meta"):
            model = DNABERTS(**cfg)
        _check_shapes(model, state, weights_file(folder))
        model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, strict=True, assign=True)
        kind, info_src = "hf", str(folder.resolve())
    info = {
        "source": info_src, "kind": kind, "layers": cfg["num_layers"], "dim": cfg["hidden_size"],
        "tokenizer": "stand-in" if kind == "random" else str(tok_path.resolve()),
    }
    if kind == "random":
        info["seed"] = seed
    return model.eval(), load_tokenizer(tok_path), info
