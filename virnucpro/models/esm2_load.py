"""Reading ESM-2 weights: fair-esm .pt files, Hugging Face snapshot folders (safetensors or
.bin, sharded or not), names looked up in the torch-hub and HF caches, and seeded random
weights.  Configs and shapes are checked, and the model's size against free memory, before any
storage is allocated; the storage is then allocated straight on the target device."""
from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from virnucpro.errors import ModelLoadError
from virnucpro.models.attention import uses_varlen
from virnucpro.models.esm2 import ESM2, ESM2Config, param_bytes
from virnucpro.models.hub import (SafetensorsState, check_fits, config_int, first_line, hf_cache_roots, hf_snapshots,
                                  hf_weight_files, read_json_object, staged_copy, torch_load)
from virnucpro.models.random_init import random_init_, to_empty
from virnucpro.presets import PRESETS

# The checkpoint's config is an argparse.Namespace: allow exactly that class and no other code.
_ALLOWED = [argparse.Namespace]


def _meta_model(cfg: ESM2Config, dtype: torch.dtype) -> ESM2:
    return ESM2(cfg, device="meta", dtype=dtype).eval().requires_grad_(False)


def _materialize(model: ESM2, device: torch.device) -> ESM2:
    """Storage for a checked model, allocated straight on `device`, values unset: a 3B model bound
    for a GPU never passes through host memory."""
    model = to_empty(model, device)
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
    return random_init_(model, seed, lambda m: m.in_features ** -0.5 if isinstance(m, nn.Linear) else 1.0)


def _checked_config(layers, dim, heads, where, token_dropout: bool = True, eps: float = 1e-5) -> ESM2Config:
    for key, value in (("layers", layers), ("embedding size", dim), ("attention heads", heads)):
        if type(value) is not int or value < 1:
            raise ModelLoadError(f"{where}: the number of {key} must be a positive whole number, found {value!r}")
    if dim % heads or (dim // heads) % 2:
        raise ModelLoadError(f"{where}: embedding size {dim} does not split into {heads} attention heads of an "
                             "even size (rotary positions need one)")
    return ESM2Config(layers, dim, heads, bool(token_dropout), float(eps))


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
    if isinstance(state, SafetensorsState):
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
    freqs = [layer.self_attn.rot_emb.inv_freq for layer in model.layers]
    if any(not torch.equal(f, freqs[0]) for f in freqs[1:]):  # the forward pass builds one table for all layers
        raise ModelLoadError(f"{where}: the rotary frequencies differ between layers, where ESM-2 shares one set")


def _fair_esm_name(key: str) -> list[str]:
    name = re.sub(r"^encoder\.(sentence_encoder\.)?", "", key)
    return [] if name.startswith(("lm_head.", "contact_head.")) else [name]


def _load_fair_esm(path: Path, device, dtype) -> tuple[ESM2, dict]:
    data = torch_load(path, _ALLOWED, "ESM-2 checkpoint")
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
    found = hf_weight_files(folder)
    if found is None:
        raise ModelLoadError(f"{folder}: no model.safetensors or pytorch_model.bin (or their .index.json)")
    kind, files = found
    if kind == "safetensors":
        state = SafetensorsState(files)
    else:
        state = {}
        for f in files:
            part = torch_load(f, _ALLOWED, "ESM-2 checkpoint")
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
        snaps = hf_snapshots(repo_dir, lambda s: (s / "config.json").is_file() and bool(hf_weight_files(s)))
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
