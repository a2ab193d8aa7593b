"""Seeded random weights written in the published file formats, so that a benchmark or a test
reads its models from files exactly as a user's run does:

- ESM-2 as a fair-esm `.pt` (like `esm2_t36_3B_UR50D.pt`): a pickle of `{"model": state dict,
  "cfg": {"model": argparse.Namespace(...)}, "args": None}`, fp16 tensors named as fair-esm's
  training code named them (`encoder.sentence_encoder.layers.0.self_attn.q_proj.weight`, the LM
  head under `encoder.lm_head.`, its weight tied to the token embedding);
- DNABERT-S as a Hugging Face snapshot folder: `config.json`, `pytorch_model.bin` (fp32, the
  MosaicBERT `BertModel` key names, pooler included), and the project's stand-in tokenizer
  saved with padding and truncation on, as the published `tokenizer.json` ships;
- the classifier as virnucpro's `.safetensors`.

    python -m virnucpro.models.weightfiles DIR [--preset full] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch

from virnucpro.presets import PRESETS

ESM_NAME = {"full": "esm2_t36_3B_UR50D", "tiny": "esm2_t3_tiny_random"}
_ALPHABET_SIZE = 33  # fair-esm's ESM-1b alphabet


def _atomic(path: Path, write) -> Path:
    """Write through a temporary name beside `path`, so that a killed writer leaves no half file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return path


def _random(shape, kind: str, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    # Drawn in fp32 one tensor at a time, then converted: the host holds the file's dtype only.
    if kind == "norm":
        t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
    elif kind == "bias":
        t = 0.02 * torch.randn(shape, generator=gen)
    else:
        t = torch.randn(shape, generator=gen) * (shape[-1] ** -0.5 if kind == "matrix" else 1.0)
    return t.to(dtype)


# ------------------------------------------------------------------------------------ ESM-2

def fair_esm_cfg(layers: int, dim: int, heads: int) -> argparse.Namespace:
    """The model config as fair-esm's checkpoints hold it (`pretrained.py` reads encoder_layers,
    encoder_embed_dim, encoder_attention_heads and token_dropout)."""
    return argparse.Namespace(_name="esm2", encoder_layers=layers, encoder_embed_dim=dim,
                              encoder_ffn_embed_dim=4 * dim, encoder_attention_heads=heads,
                              token_dropout=True, dropout=0.0, attention_dropout=0.0,
                              activation_dropout=0.0, max_positions=1024)


def fair_esm_shapes(layers: int, dim: int, heads: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """fair-esm checkpoint key -> (shape, kind) for every tensor the file holds but the tied LM-head weight."""
    enc = "encoder.sentence_encoder."
    out = {enc + "embed_tokens.weight": ((_ALPHABET_SIZE, dim), "embedding")}
    for i in range(layers):
        p = f"{enc}layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[f"{p}self_attn.{proj}.weight"] = ((dim, dim), "matrix")
            out[f"{p}self_attn.{proj}.bias"] = ((dim,), "bias")
        out[f"{p}self_attn.rot_emb.inv_freq"] = ((dim // heads // 2,), "inv_freq")
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            out[f"{p}{ln}.weight"], out[f"{p}{ln}.bias"] = ((dim,), "norm"), ((dim,), "bias")
        out[f"{p}fc1.weight"], out[f"{p}fc1.bias"] = ((4 * dim, dim), "matrix"), ((4 * dim,), "bias")
        out[f"{p}fc2.weight"], out[f"{p}fc2.bias"] = ((dim, 4 * dim), "matrix"), ((dim,), "bias")
    out[enc + "emb_layer_norm_after.weight"] = ((dim,), "norm")
    out[enc + "emb_layer_norm_after.bias"] = ((dim,), "bias")
    out["encoder.lm_head.dense.weight"] = ((dim, dim), "matrix")
    out["encoder.lm_head.dense.bias"] = ((dim,), "bias")
    out["encoder.lm_head.layer_norm.weight"] = ((dim,), "norm")
    out["encoder.lm_head.layer_norm.bias"] = ((dim,), "bias")
    out["encoder.lm_head.bias"] = ((_ALPHABET_SIZE,), "bias")
    return out


def fair_esm_checkpoint(layers: int, dim: int, heads: int, seed: int = 0) -> dict:
    from virnucpro.models.esm2 import PAD, default_inv_freq

    gen = torch.Generator().manual_seed(seed)
    inv_freq = default_inv_freq(dim // heads).half()  # every tensor of the published files is fp16
    state = {}
    for key, (shape, kind) in fair_esm_shapes(layers, dim, heads).items():
        state[key] = inv_freq.clone() if kind == "inv_freq" else _random(shape, kind, gen, torch.float16)
    state["encoder.sentence_encoder.embed_tokens.weight"][PAD] = 0
    state["encoder.lm_head.weight"] = state["encoder.sentence_encoder.embed_tokens.weight"]  # tied, one storage
    return {"model": state, "args": None, "cfg": {"model": fair_esm_cfg(layers, dim, heads)}}


def write_fair_esm(path: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    shape = PRESETS[preset]["esm2"]
    data = fair_esm_checkpoint(shape["num_layers"], shape["embed_dim"], shape["attention_heads"], seed)
    return _atomic(Path(path), lambda tmp: torch.save(data, tmp))


# ------------------------------------------------------------------------------------ DNABERT-S

def dnabert_config(num_layers: int, hidden_size: int, num_heads: int, intermediate_size: int,
                   vocab_size: int) -> dict:
    """config.json as the published DNABERT-S snapshot writes it (a MosaicBERT BertConfig)."""
    return {
        "_name_or_path": "zhihan1996/DNABERT-2-117M", "alibi_starting_size": 512, "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.0,
        "auto_map": {"AutoConfig": "configuration_bert.BertConfig", "AutoModel": "bert_layers.BertModel",
                     "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM",
                     "AutoModelForSequenceClassification": "bert_layers.BertForSequenceClassification"},
        "classifier_dropout": None, "gradient_checkpointing": False, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": hidden_size, "initializer_range": 0.02,
        "intermediate_size": intermediate_size, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
        "model_type": "bert", "num_attention_heads": num_heads, "num_hidden_layers": num_layers,
        "pad_token_id": 0, "position_embedding_type": "absolute", "torch_dtype": "float32",
        "transformers_version": "4.28.0", "type_vocab_size": 2, "use_cache": True, "vocab_size": vocab_size,
    }


def dnabert_shapes(num_layers: int, hidden_size: int, intermediate_size: int, vocab_size: int,
                   **_) -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, kind) of the published `pytorch_model.bin` (a MosaicBERT `BertModel`)."""
    d, h = hidden_size, intermediate_size
    shapes = {"embeddings.word_embeddings.weight": ((vocab_size, d), "matrix"),
              "embeddings.token_type_embeddings.weight": ((2, d), "matrix"),
              "embeddings.LayerNorm.weight": ((d,), "norm"), "embeddings.LayerNorm.bias": ((d,), "bias")}
    for i in range(num_layers):
        p = f"encoder.layer.{i}."
        shapes.update({
            p + "attention.self.Wqkv.weight": ((3 * d, d), "matrix"), p + "attention.self.Wqkv.bias": ((3 * d,), "bias"),
            p + "attention.output.dense.weight": ((d, d), "matrix"), p + "attention.output.dense.bias": ((d,), "bias"),
            p + "attention.output.LayerNorm.weight": ((d,), "norm"), p + "attention.output.LayerNorm.bias": ((d,), "bias"),
            p + "mlp.gated_layers.weight": ((2 * h, d), "matrix"),
            p + "mlp.wo.weight": ((d, h), "matrix"), p + "mlp.wo.bias": ((d,), "bias"),
            p + "mlp.layernorm.weight": ((d,), "norm"), p + "mlp.layernorm.bias": ((d,), "bias")})
    shapes["pooler.dense.weight"], shapes["pooler.dense.bias"] = ((d, d), "matrix"), ((d,), "bias")
    return shapes


def dnabert_state(seed: int = 0, **shape) -> dict[str, torch.Tensor]:
    """Random fp32 tensors under the key names of the published `pytorch_model.bin`."""
    gen = torch.Generator().manual_seed(seed)
    return {k: _random(s, kind, gen, torch.float32) for k, (s, kind) in dnabert_shapes(**shape).items()}


_TOKENIZER_CONFIG = {"clean_up_tokenization_spaces": True, "cls_token": "[CLS]", "mask_token": "[MASK]",
                     "model_max_length": 1000000000000000019884624838656, "pad_token": "[PAD]",
                     "sep_token": "[SEP]", "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]"}
_SPECIAL_TOKENS = {k: _TOKENIZER_CONFIG[k] for k in ("cls_token", "mask_token", "pad_token", "sep_token", "unk_token")}


def save_dnabert_snapshot(folder: str | Path, state: dict[str, torch.Tensor], config: dict) -> Path:
    """A snapshot folder from given tensors and config; the tokenizer is the stand-in, with padding
    and truncation at 2000 switched on as in the published file."""
    from tokenizers import Tokenizer

    from virnucpro.models.dnabert_load import STAND_IN_TOKENIZER

    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        torch.save(state, tmp / "pytorch_model.bin")
        tok = Tokenizer.from_file(str(STAND_IN_TOKENIZER))
        tok.enable_padding(pad_id=3, pad_token="[PAD]", length=2000)
        tok.enable_truncation(2000)
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(_TOKENIZER_CONFIG, indent=2) + "\n")
        (tmp / "special_tokens_map.json").write_text(json.dumps(_SPECIAL_TOKENS, indent=2) + "\n")

    return _atomic(Path(folder), write)


def write_dnabert_snapshot(folder: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    shape = PRESETS[preset]["dnabert"]
    return save_dnabert_snapshot(folder, dnabert_state(**shape, seed=seed), dnabert_config(**shape))


# ------------------------------------------------------------------------------------ all three

def write_classifier(path: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    from virnucpro.models.classifier_load import random_classifier, save_classifier

    shape = PRESETS[preset]["classifier"]
    model = random_classifier(shape["input_dim"], shape["hidden_dim"], shape["num_class"], seed=seed)
    return _atomic(Path(path), lambda tmp: save_classifier(model, tmp))


def model_files(root: str | Path, preset: str = "tiny", seed: int = 0) -> dict[str, Path]:
    """The three model files of `preset` under `root/<preset>-seed<seed>/`, written once: a later call
    finds them (each is written under a temporary name and renamed, so a file present is whole)."""
    where = Path(root) / f"{preset}-seed{seed}"
    files = {"esm": where / f"{ESM_NAME[preset]}.pt", "dnabert": where / "DNABERT-S",
             "classifier": where / "classifier.safetensors"}
    where.mkdir(parents=True, exist_ok=True)
    if not files["dnabert"].is_dir():
        write_dnabert_snapshot(files["dnabert"], preset, seed)
    if not files["classifier"].is_file():
        write_classifier(files["classifier"], preset, seed)
    if not files["esm"].is_file():
        write_fair_esm(files["esm"], preset, seed)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name, path in model_files(args.root, args.preset, args.seed).items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
