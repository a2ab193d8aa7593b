"""ESM-2 protein language model, inference only, on packed batches.

The same numbers as fair-esm's `ESM2` (pre-LN transformer, rotary attention, token-dropout
rescaling of the embeddings), but sequences are laid end to end without padding: linear
layers see [T, D], attention sees one sequence at a time through `packed_attention`.
Module names follow fair-esm so that its checkpoints load key for key; HF checkpoints are
renamed on the way in.  No LM head and no contact head: only embeddings are needed.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from virnucpro.errors import ModelLoadError
from virnucpro.models import fused
from virnucpro.models.hub import (check_fits, config_int, first_line, hf_cache_roots, hf_snapshots, read_json_object,
                                  torch_load)
from virnucpro.models.attention import packed_attention, token_index, uses_varlen
from virnucpro.models.pooling import segment_sums
from virnucpro.presets import PRESETS
from virnucpro.runner import pack  # noqa: F401  (part of this module's API)

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


class Rotary(nn.Module):
    def __init__(self, head_dim: int, device=None):
        super().__init__()
        # fp32 in every model dtype: position * inv_freq must stay exact for long proteins.
        self.register_buffer("inv_freq", torch.empty(head_dim // 2, dtype=torch.float32, device=device))
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        self.inv_freq.copy_(default_inv_freq(2 * self.inv_freq.numel(), self.inv_freq.device))

    def forward(self, q: torch.Tensor, k: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # fp32 in every model dtype: position * inv_freq must stay exact for long proteins.
        angle = pos[:, None, None].float() * self.inv_freq.float()  # [T, 1, Dh/2]
        if q.is_cuda and rotary_kernel() == "triton":
            from virnucpro.models import rotary_triton

            return rotary_triton.rotary_(q, k, angle.cos(), angle.sin())
        return fused.rotary(q, k, angle.cos(), angle.sin())


ROTARY_ENV = "VIRNUCPRO_ESM_ROTARY"


def rotary_kernel() -> str:
    """ESM-2's rotary on a GPU, from VIRNUCPRO_ESM_ROTARY: "auto" (default: "triton" where Triton
    imports, else "inductor"), "triton" (rotary_triton.py: as fast, and no torch.compile in the
    process; docs/PERFORMANCE.md) or "inductor" (fused.rotary, compiled by torch.compile)."""
    value = os.environ.get(ROTARY_ENV, "").strip().lower() or "auto"
    if value not in ("auto", "inductor", "triton"):
        raise ValueError(f"{ROTARY_ENV}={value!r}: expected auto, inductor or triton")
    if value == "auto":
        return "triton" if _have_triton() else "inductor"
    return value


@functools.lru_cache(maxsize=1)
def _have_triton() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None


class SelfAttention(nn.Module):
    def __init__(self, cfg: ESM2Config, **factory):
        super().__init__()
        d = cfg.embed_dim
        self.heads, self.head_dim = cfg.attention_heads, cfg.head_dim
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d, **factory) for _ in range(4))
        self.rot_emb = Rotary(cfg.head_dim, device=factory.get("device"))

    def forward(self, x, pos, cu_seqlens, max_seqlen):
        shape = (x.shape[0], self.heads, self.head_dim)
        q, k = self.rot_emb(self.q_proj(x).view(shape), self.k_proj(x).view(shape), pos)
        out = packed_attention(q, k, self.v_proj(x).view(shape), cu_seqlens, max_seqlen)
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

    def forward(self, x, pos, cu_seqlens, max_seqlen):
        # LayerNorm, GELU and the residual adds stay eager: on an H200 Inductor's fused versions
        # of them measured 10-25% slower than PyTorch's own kernels.
        x = x + self.self_attn(self.self_attn_layer_norm(x), pos, cu_seqlens, max_seqlen)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class ESM2(nn.Module):
    def __init__(self, cfg: ESM2Config, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.cfg = cfg
        # First parameter on purpose: the embedder reads the hidden size from the first matrix.
        self.embed_tokens = nn.Embedding(len(ALPHABET), cfg.embed_dim, padding_idx=PAD, **factory)
        self.layers = nn.ModuleList(Layer(cfg, **factory) for _ in range(cfg.num_layers))
        self.emb_layer_norm_after = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps, **factory)

    def forward(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        """Last hidden state [T, D] (after the final LayerNorm) of packed `<cls> ... <eos>` sequences."""
        seq, pos = token_index(cu_seqlens, tokens.numel())
        x = self.embed_tokens(tokens)
        if self.cfg.token_dropout:
            x = self._undo_token_dropout(x, tokens, seq, cu_seqlens)
        for layer in self.layers:
            x = layer(x, pos, cu_seqlens, max_seqlen)
        return self.emb_layer_norm_after(x)

    @staticmethod
    def _undo_token_dropout(x, tokens, seq, cu_seqlens):
        # ESM-2 was trained with masked tokens zeroed; at inference its embeddings are scaled to the
        # same expected norm: by 0.88, or more when a sequence does contain <mask> tokens.
        masked = tokens == MASK
        x = x.masked_fill(masked[:, None], 0.0)
        cu = cu_seqlens.long()
        # Sums of 0s and 1s: exact in any order, so index_add_'s atomics cannot move them.
        n_masked = torch.zeros(cu.numel() - 1, device=x.device).index_add_(0, seq, masked.float())
        observed = n_masked / (cu[1:] - cu[:-1])  # counted in fp32: bf16 cannot hold lengths above 256
        return x * (1 - MASK_RATIO_TRAIN) / (1 - observed).to(x.dtype)[seq, None]

    def embed_packed(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        """Per-sequence mean of the last layer over the residues (<cls>/<eos> left out): [B, D] float32.
        A protein without residues gets zeros, where fair-esm's mean would give NaN."""
        hidden = self(tokens, cu_seqlens, max_seqlen).float()
        seq, pos = token_index(cu_seqlens, tokens.numel())
        cu = cu_seqlens.long()
        lengths = cu[1:] - cu[:-1]
        special = (pos == 0) | (pos == lengths[seq] - 1)
        sums = segment_sums(hidden.masked_fill(special[:, None], 0.0), lengths)
        return sums / (lengths - 2).clamp(min=1)[:, None].float()

    @torch.no_grad()
    def reset_rotary(self) -> None:
        for layer in self.layers:
            layer.self_attn.rot_emb.reset()


# ----------------------------------------------------------------------------- loading

def _meta_model(cfg: ESM2Config, dtype: torch.dtype) -> ESM2:
    return ESM2(cfg, device="meta", dtype=dtype).eval().requires_grad_(False)


def _materialize(model: ESM2, device: torch.device) -> ESM2:
    """Storage for a checked model, allocated straight on `device`, values unset: a 3B model bound
    for a GPU never passes through host memory."""
    model = model.to_empty(device=device)
    if device.type != "meta":
        model.reset_rotary()
    return model


def _empty_model(cfg: ESM2Config, device: torch.device, dtype: torch.dtype) -> ESM2:
    return _materialize(_meta_model(cfg, dtype), device)


def _random_model(preset: str, device: torch.device, dtype: torch.dtype, seed: int) -> ESM2:
    if preset not in PRESETS:
        raise ModelLoadError(f"random:{preset}: unknown preset (choose from {', '.join(PRESETS)})")
    model = _empty_model(ESM2Config(**PRESETS[preset]["esm2"]), device, dtype)
    if device.type == "meta":
        return model
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, m.in_features ** -0.5, generator=gen)
                m.bias.zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                m.weight.normal_(0.0, 1.0, generator=gen)
                m.weight[PAD].zero_()
    return model


def _checked_config(layers, dim, heads, where, token_dropout: bool = True, eps: float = 1e-5) -> ESM2Config:
    for key, value in (("layers", layers), ("embedding size", dim), ("attention heads", heads)):
        if type(value) is not int or value < 1:
            raise ModelLoadError(f"{where}: the number of {key} must be a positive whole number, found {value!r}")
    if dim % heads or (dim // heads) % 2:
        raise ModelLoadError(f"{where}: embedding size {dim} does not split into {heads} attention heads of an "
                             "even size (rotary positions need one)")
    return ESM2Config(layers, dim, heads, bool(token_dropout), float(eps))


def param_bytes(cfg: ESM2Config, dtype: torch.dtype) -> int:
    """Bytes of the model's weights, counted from the config: nothing is built to know it."""
    d = cfg.embed_dim
    per_layer = 4 * (d * d + d) + 4 * d + (4 * d * d + 4 * d) + (4 * d * d + d)
    return (len(ALPHABET) * d + cfg.num_layers * per_layer + 2 * d) * torch.empty(0, dtype=dtype).element_size()


def _check_fits(cfg: ESM2Config, device, dtype, where) -> None:
    check_fits(param_bytes(cfg, dtype), device, where,
               f"{cfg.num_layers}-layer, {cfg.embed_dim}-wide ESM-2 ({str(dtype).removeprefix('torch.')})")


def _brief(names) -> str:
    names = sorted(names)
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _plan(model: ESM2, state: Mapping, rename, where: str) -> dict[str, str]:
    """Which checkpoint key fills each model tensor, checked against the model's shapes (on the meta
    device: nothing is allocated before the checkpoint is known to fit).

    `rename(key)` gives the model names a checkpoint key fills: [] for parts we do not use (LM
    head, contact head), None for a key that has no place in ESM-2.  Rotary inv_freq may be
    absent (it then keeps fair-esm's formula); every other tensor must be present."""
    target = model.state_dict()
    source, unexpected = {}, []
    for key in state.keys():
        names = rename(key) if isinstance(key, str) else None
        if names is None or any(n not in target for n in names):
            unexpected.append(str(key))
        source.update((n, key) for n in names or ())
    missing = [n for n in target if n not in source and not n.endswith("rot_emb.inv_freq")]
    if missing or unexpected:
        parts = [f"missing {_brief(missing)}" if missing else "", f"unexpected {_brief(unexpected)}" if unexpected else ""]
        raise ModelLoadError(f"{where}: not an ESM-2 checkpoint of this shape: " + "; ".join(p for p in parts if p))
    for name, key in source.items():
        shape = _shape(state, key, where)
        if tuple(shape) != tuple(target[name].shape):
            raise ModelLoadError(f"{where}: {key} has shape {tuple(shape)}, "
                                 f"the configured model expects {tuple(target[name].shape)}")
    return source


def _shape(state: Mapping, key, where: str) -> tuple[int, ...]:
    if isinstance(state, _SafetensorsState):
        return tuple(state.shape(key))  # from the header: no tensor is read to check it
    if not isinstance(state[key], torch.Tensor):
        raise ModelLoadError(f"{where}: {key} is a {type(state[key]).__name__}, not a tensor")
    return tuple(state[key].shape)


def _fill(model: ESM2, state: Mapping, source: dict[str, str], where: str) -> None:
    target = model.state_dict()
    try:
        staged_copy(((target[name], state[key]) for name, key in source.items()), target[next(iter(target))].device)
    except torch.cuda.OutOfMemoryError:
        raise
    except (OSError, RuntimeError) as e:  # a file that shrank or a damaged shard after its header was read
        raise ModelLoadError(f"{where}: cannot read the weights ({first_line(e)})") from None


STAGE_BYTES, STAGE_BUFFERS = 32 << 20, 4


@torch.no_grad()
def staged_copy(pairs, device: torch.device, stage_bytes: int | None = None) -> None:
    """Copy each (dst, src) pair, src a host tensor (memory-mapped from a checkpoint) and dst a
    tensor of the same shape on `device`, in any dtype.

    On a GPU the bytes go through a few pinned buffers, filled by the host while the GPU copies the
    previous one, and each tensor is converted on the GPU: a direct `dst.copy_(src)` from pageable
    memory would first convert on the host (a second full pass over 5.6 GB for ESM-2 3B) and then
    copy without overlap.  On the CPU each pair is copied in place."""
    if device.type != "cuda" and stage_bytes is None:
        for dst, src in pairs:
            dst.copy_(src)
        return
    stage_bytes = stage_bytes or STAGE_BYTES
    cuda = device.type == "cuda"
    host = [torch.empty(stage_bytes, dtype=torch.uint8, pin_memory=cuda) for _ in range(STAGE_BUFFERS)]
    dev = [torch.empty(stage_bytes, dtype=torch.uint8, device=device) for _ in host] if cuda else host
    stream = torch.cuda.Stream(device) if cuda else None
    done: list = [None] * len(host)
    state = {"buf": 0, "fill": 0, "pieces": []}

    def flush():
        i, fill, pieces = state["buf"], state["fill"], state["pieces"]
        if pieces:
            if cuda:
                with torch.cuda.stream(stream):
                    dev[i][:fill].copy_(host[i][:fill], non_blocking=True)
                    for dst, a, n, dtype, off in pieces:
                        dst[a:a + n].copy_(dev[i][off:off + n * dtype.itemsize].view(dtype))
                    done[i] = torch.cuda.Event()
                    done[i].record(stream)
            else:
                for dst, a, n, dtype, off in pieces:
                    dst[a:a + n].copy_(host[i][off:off + n * dtype.itemsize].view(dtype))
        i = (i + 1) % len(host)
        if done[i] is not None:
            done[i].synchronize()  # the GPU has read this buffer: the host may fill it again
        state.update(buf=i, fill=0, pieces=[])

    for dst, src in pairs:
        flat, out = src.contiguous().view(-1), dst.view(-1)
        size, a = flat.element_size(), 0
        while a < flat.numel():
            fill = -(-state["fill"] // 64) * 64  # every piece starts aligned for any dtype's view
            n = min((stage_bytes - fill) // size, flat.numel() - a)
            if n <= 0:
                flush()
                continue
            host[state["buf"]][fill:fill + n * size].copy_(flat[a:a + n].view(torch.uint8))
            state["pieces"].append((out, a, n, flat.dtype, fill))
            state["fill"], a = fill + n * size, a + n
    flush()
    if cuda:
        stream.synchronize()


def _torch_load(path: Path):
    # The checkpoint's config is an argparse.Namespace: allow exactly that class and no other code.
    return torch_load(path, [argparse.Namespace], "ESM-2 checkpoint")


def _fair_esm_name(key: str) -> list[str]:
    name = re.sub(r"^encoder\.(sentence_encoder\.)?", "", key)
    return [] if name.startswith(("lm_head.", "contact_head.")) else [name]


def _load_fair_esm(path: Path, device, dtype) -> tuple[ESM2, dict]:
    data = _torch_load(path)
    try:
        args = data["cfg"]["model"]
        layers, dim, heads = args.encoder_layers, args.encoder_embed_dim, args.encoder_attention_heads
        token_dropout = getattr(args, "token_dropout", True)
        state = data["model"]
        if not isinstance(state, Mapping):
            raise TypeError(f"'model' is a {type(state).__name__}")
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ModelLoadError(f"{path}: not a fair-esm ESM-2 checkpoint, which holds 'model' (a state dict) and "
                             f"'cfg': {{'model': Namespace(encoder_layers, ...)}} ({type(e).__name__}: {e})") from None
    cfg = _checked_config(layers, dim, heads, path, token_dropout)
    _check_fits(cfg, device, dtype, path)
    model = _meta_model(cfg, dtype)
    source = _plan(model, state, _fair_esm_name, str(path))
    model = _materialize(model, device)
    _fill(model, state, source, str(path))
    return model, {"kind": "fair-esm", "path": str(path)}


_HF_LAYER_PARTS = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.self.rotary_embeddings": "self_attn.rot_emb",
    "attention.output.dense": "self_attn.out_proj",
    "attention.LayerNorm": "self_attn_layer_norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    "LayerNorm": "final_layer_norm",
}
_HF_UNUSED = ("lm_head.", "contact_head.", "pooler.", "embeddings.position_ids", "embeddings.position_embeddings.")


def _hf_renamer(num_layers: int):
    every_layer = [str(i) for i in range(num_layers)]

    def rename(key: str) -> list[str] | None:
        key = key.removeprefix("esm.")
        if key.startswith(_HF_UNUSED):
            return []
        if key == "embeddings.word_embeddings.weight":
            return ["embed_tokens.weight"]
        if key in ("encoder.emb_layer_norm_after.weight", "encoder.emb_layer_norm_after.bias"):
            return [key.removeprefix("encoder.")]
        if key == "rotary_embeddings.inv_freq":  # one copy for all layers, as transformers >= 5 holds it
            key = "encoder.layer.*.attention.self.rotary_embeddings.inv_freq"
        # transformers 5 writes LayerNorm gamma/beta and a literal "layer.*" for the shared inv_freq.
        m = re.fullmatch(r"encoder\.layer\.(\d+|\*)\.(.+)\.(weight|bias|gamma|beta|inv_freq)", key)
        if m is None or m.group(2) not in _HF_LAYER_PARTS:
            return None
        leaf = {"gamma": "weight", "beta": "bias"}.get(m.group(3), m.group(3))
        layers = every_layer if m.group(1) == "*" else [m.group(1)]
        return [f"layers.{i}.{_HF_LAYER_PARTS[m.group(2)]}.{leaf}" for i in layers]
    return rename


class _SafetensorsState(Mapping):
    """Tensors of one or more .safetensors files, read only when asked for (host memory stays
    at one tensor, not the whole model); shapes come from the headers alone."""

    def __init__(self, files: list[Path]):
        from safetensors import safe_open

        self._handles, self._where = [], {}
        for f in files:
            try:
                if f.stat().st_size == 0:
                    raise ValueError("the file is empty")
                h = safe_open(str(f), framework="pt", device="cpu")
            except Exception as e:
                raise ModelLoadError(f"{f}: not a readable safetensors file ({first_line(e)})") from None
            self._handles.append(h)
            self._where.update((k, (h, f)) for k in h.keys())

    def shape(self, key) -> list[int]:
        return self._where[key][0].get_slice(key).get_shape()

    def __getitem__(self, key):
        return self._where[key][0].get_tensor(key)

    def __iter__(self):
        return iter(self._where)

    def __len__(self):
        return len(self._where)


def _hf_weight_files(folder: Path) -> tuple[str, list[Path]] | None:
    for single, kind in (("model.safetensors", "safetensors"), ("pytorch_model.bin", "bin")):
        if (folder / single).is_file():
            return kind, [folder / single]
        index = folder / f"{single}.index.json"
        if index.is_file():
            return kind, _shards(index)
    return None


def _shards(index: Path) -> list[Path]:
    """The shard files a sharded checkpoint's index names, each a file beside the index."""
    weight_map = read_json_object(index, "checkpoint index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelLoadError(f"{index}: 'weight_map' must be a JSON object from tensor names to shard file names")
    shards = []
    for name in sorted(set(weight_map.values())):
        shard = index.parent / name
        if Path(name).name != name or not shard.is_file():
            raise ModelLoadError(f"{index}: names shard {name!r}, which is not a file beside it")
        shards.append(shard)
    return shards


def _load_hf(folder: Path, device, dtype) -> tuple[ESM2, dict]:
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder}: no config.json: not an HF ESM-2 snapshot folder")
    where = folder / "config.json"
    conf = read_json_object(where, "model config")
    if conf.get("position_embedding_type") != "rotary" or conf.get("emb_layer_norm_before"):
        raise ModelLoadError(f"{where}: describes an ESM model that is not ESM-2 "
                             "(ESM-2 has rotary positions and no embedding LayerNorm)")
    layers, dim, heads = (config_int(conf, k, where) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads"))
    eps = conf.get("layer_norm_eps", 1e-12)  # transformers' EsmConfig defaults apply when a key is absent
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 <= eps < 1:
        raise ModelLoadError(f"{where}: 'layer_norm_eps' must be a small number, found {json.dumps(eps)}")
    cfg = _checked_config(layers, dim, heads, where, conf.get("token_dropout", False), eps)
    if conf.get("intermediate_size", 4 * dim) != 4 * dim:
        raise ModelLoadError(f"{where}: intermediate_size must be 4 x hidden_size for ESM-2")
    _check_fits(cfg, device, dtype, where)
    found = _hf_weight_files(folder)
    if found is None:
        raise ModelLoadError(f"{folder}: no model.safetensors or pytorch_model.bin (or their .index.json)")
    kind, files = found
    if kind == "safetensors":
        state = _SafetensorsState(files)
    else:
        state = {}
        for f in files:
            part = _torch_load(f)
            if not isinstance(part, Mapping):
                raise ModelLoadError(f"{f}: expected a state dict, found a {type(part).__name__}")
            state.update(part)
    model = _meta_model(cfg, dtype)
    source = _plan(model, state, _hf_renamer(cfg.num_layers), str(folder))
    model = _materialize(model, device)
    _fill(model, state, source, str(folder))
    return model, {"kind": "hf", "path": str(folder)}


def _find_by_name(source: str) -> tuple[str | None, Path | list[str]]:
    """Look `[org/]name` up in the caches: ("fair-esm"|"hf", where) or (None, places looked)."""
    looked = [f"path: {Path(source).expanduser().absolute()}"]
    m = re.fullmatch(r"(?:([\w.-]+)/)?([\w.-]+?)(?:\.pt)?", source)
    if m is None:  # a path, not a name
        return None, looked
    org, name = m.group(1) or "facebook", m.group(2)
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pt"
    looked.append(f"torch-hub cache: {hub_file}")
    if hub_file.is_file():
        return "fair-esm", hub_file
    for root in hf_cache_roots():
        repo_dir = root / f"models--{org}--{name}"
        looked.append(f"Hugging Face cache: {repo_dir}/snapshots/*/")
        snaps = hf_snapshots(repo_dir, lambda s: (s / "config.json").is_file() and bool(_hf_weight_files(s)))
        if snaps:
            return "hf", snaps[0]
    return None, looked


def _not_found(source: str, looked: list[str]) -> ModelLoadError:
    name = Path(source).name.removesuffix(".pt")
    name = name if name.startswith("esm2_") else "esm2_t36_3B_UR50D"
    places = "\n".join(f"  - {p}" for p in looked)
    return ModelLoadError(
        f"ESM-2 weights '{source}' not found.  Looked in:\n{places}\n"
        "Fetch them on a machine with network access and copy them here, then pass their path or name:\n"
        f"  - fair-esm: https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt "
        f"(name lookups read {Path(torch.hub.get_dir()) / 'checkpoints'}/), or\n"
        f"  - Hugging Face: `huggingface-cli download facebook/{name}` "
        f"(name lookups read {hf_cache_roots()[0]}/models--facebook--{name}/).\n"
        "A run without real weights can use 'random:full' or 'random:tiny'."
    )


def load_esm2(source: str, device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[ESM2, dict]:
    """ESM-2 in eval mode on `device` in `dtype`, and a JSON-able description of what was loaded.

    `source`: a fair-esm .pt file, an HF snapshot folder, a model name looked up in the
    torch-hub and HF caches (`esm2_t36_3B_UR50D`, `facebook/esm2_t36_3B_UR50D`), or
    `random:<preset>` for seeded random weights of that preset's shape."""
    device = torch.device(device)
    if source.startswith("random:"):
        model, info = _random_model(source.removeprefix("random:"), device, dtype, seed), {"kind": "random", "seed": seed}
    else:
        path = Path(source).expanduser()
        if path.is_file():
            model, info = _load_fair_esm(path, device, dtype)
        elif path.is_dir():
            model, info = _load_hf(path, device, dtype)
        else:
            kind, found = _find_by_name(source)
            if kind is None:
                raise _not_found(source, found)
            model, info = (_load_fair_esm if kind == "fair-esm" else _load_hf)(found, device, dtype)
    cfg = model.cfg
    return model, {"source": source, **info, "layers": cfg.num_layers, "dim": cfg.embed_dim,
                   "heads": cfg.attention_heads, "config": asdict(cfg), "dtype": str(dtype).removeprefix("torch."),
                   "attention": "varlen" if uses_varlen(device, dtype) else "padded-sdpa"}
