"""The VirNucPro MLP classifier (3328 -> 512 -> 2); classifier_load.py reads and writes it."""
from __future__ import annotations

import torch
import torch.nn as nn


class MLPClassifier(nn.Module):
    # Attribute names are the original's: they are the state-dict keys of its checkpoints.
    def __init__(self, input_dim: int = 3328, hidden_dim: int = 512, num_class: int = 2):
        super().__init__()
        self.hidden_layer = nn.Linear(input_dim, hidden_dim)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.output_layer = nn.Linear(hidden_dim, num_class)
        self.dropout = nn.Dropout(0.5)

    @property
    def input_dim(self) -> int:
        return self.hidden_layer.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.relu(self.bn1(self.hidden_layer(x))))
        return self.output_layer(x)


def random_classifier(input_dim: int, hidden_dim: int, num_class: int = 2, seed: int = 0) -> MLPClassifier:
    """A seeded random classifier with non-trivial BatchNorm statistics, for runs without trained weights."""
    gen = torch.Generator().manual_seed(seed)
    model = MLPClassifier(input_dim, hidden_dim, num_class)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / p.shape[-1] ** 0.5))
        model.bn1.weight.add_(1.0)
        model.bn1.running_mean.copy_(torch.randn(hidden_dim, generator=gen) * 0.1)
        model.bn1.running_var.copy_(torch.rand(hidden_dim, generator=gen) + 0.5)
    return model.eval()
