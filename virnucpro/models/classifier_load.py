"""Reading and writing the VirNucPro classifier.

The original `train.py` saved whole modules with `torch.save(model)`, so its
`300_model.pth`/`500_model.pth` are pickles of `__main__.MLPClassifier`.  We read
them with `weights_only=True` and an allow-list that maps that one class name to
ours: a pickle that asks for any other global is refused, so loading a checkpoint
never runs arbitrary code.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from virnucpro.errors import ModelLoadError
from virnucpro.models.classifier import MLPClassifier, random_classifier  # noqa: F401  (part of this module's API)
from virnucpro.models.hub import first_line, torch_load

_ALLOWED = [(MLPClassifier, "__main__.MLPClassifier"), nn.Linear, nn.BatchNorm1d, nn.Dropout, set]


def _from_state_dict(state: dict[str, torch.Tensor], path: Path) -> MLPClassifier:
    try:
        hidden, inp = state["hidden_layer.weight"].shape
        num_class = state["output_layer.weight"].shape[0]
        model = MLPClassifier(inp, hidden, num_class)
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, ValueError, AttributeError, TypeError) as e:
        raise ModelLoadError(f"{path}: not a VirNucPro classifier ({first_line(e)})") from None
    # A NaN or inf weight makes every score NaN, and max(-1.0, nan) then calls every chunk viral.
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in model.state_dict().items() if v.is_floating_point()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        where = ", ".join(f"{n} in {k}" for k, n in bad.items())
        raise ModelLoadError(f"{path}: the classifier holds non-finite weights (NaN or inf: {where})")
    return model.eval()


def _state_from_pickle(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{path}: expected a pickled MLPClassifier or a state dict, found {type(obj).__name__}")
    return obj


def load_classifier(path: str | Path) -> MLPClassifier:
    """Load an original-format `.pth` or our `.safetensors`; returns an eval-mode model on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: classifier checkpoint not found")
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except Exception as e:
            raise ModelLoadError(f"{path}: cannot read safetensors file ({first_line(e)})") from None
    else:
        state = _state_from_pickle(torch_load(path, _ALLOWED, "classifier checkpoint"), path)
    return _from_state_dict(state, path)


def save_classifier(model: MLPClassifier, path: str | Path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
