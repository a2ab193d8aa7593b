"""Reading DNABERT-S: Hugging Face snapshot folders (given, or found in the cache by name), their
config.json as a `DNABERTConfig`, their weights and tokenizer, and seeded random weights for a
preset.  The config and the model's size are checked before any weights are read."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from tokenizers import Tokenizer

from virnucpro.errors import ModelLoadError
from virnucpro.models.dnabert import DNABERTConfig, DNABERTS, tokenize  # noqa: F401  (tokenize: with the tokenizer)
from virnucpro.models.hub import (check_fits, config_int, first_line, hf_cache_roots, hf_snapshots, read_json_object,
                                  torch_load)
from virnucpro.models.random_init import random_init_, to_empty
from virnucpro.presets import PRESETS

HF_NAME = "zhihan1996/DNABERT-S"
STAND_IN_TOKENIZER = Path(__file__).resolve().parents[1] / "data" / "dna_tokenizer.json"


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


def config_from_json(path: Path) -> DNABERTConfig:
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
    return DNABERTConfig(**out, layer_norm_eps=float(eps))


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


def _check_shapes(model: DNABERTS, state: dict[str, torch.Tensor], where: Path) -> None:
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


def load_dnabert(source: str, device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """-> (model in eval mode, tokenizer, info).  `source`: a snapshot folder, a Hugging
    Face model name looked up in the local cache, or `random:<preset>`."""
    device = torch.device(device)
    if source.startswith("random:"):
        preset = source.split(":", 1)[1]
        if preset not in PRESETS:
            raise ModelLoadError(f"unknown preset {preset!r} in {source!r}; choose from {', '.join(PRESETS)}")
        cfg = DNABERTConfig(**PRESETS[preset]["dnabert"])
        model = DNABERTS(cfg, device="meta", dtype=dtype)
        # Storage straight on the target device: a full model never passes through host memory.
        random_init_(to_empty(model, device), seed, lambda m: 0.02)
        tok_path, kind, info_src = STAND_IN_TOKENIZER, "random", source
    else:
        folder = find_snapshot(source)
        tok_path = folder / "tokenizer.json"
        if not tok_path.is_file():
            raise ModelLoadError(f"{folder}: tokenizer.json is missing")
        cfg = config_from_json(folder / "config.json")
        check_fits(cfg.param_count() * torch.empty(0, dtype=dtype).element_size(), device, folder / "config.json",
                   f"{cfg.num_layers}-layer, {cfg.hidden_size}-wide DNABERT-S")
        state = convert_state_dict(_read_weights(folder), weights_file(folder))
        model = DNABERTS(cfg, device="meta")
        _check_shapes(model, state, weights_file(folder))
        model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, strict=True, assign=True)
        kind, info_src = "hf", str(folder.resolve())
    info = {
        "source": info_src, "kind": kind, "layers": cfg.num_layers, "dim": cfg.hidden_size,
        "tokenizer": "stand-in" if kind == "random" else str(tok_path.resolve()),
    }
    if kind == "random":
        info["seed"] = seed
    return model.eval(), load_tokenizer(tok_path), info
