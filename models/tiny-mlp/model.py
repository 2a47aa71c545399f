"""tiny-mlp: a two-layer classifier, the zoo's test model (weights from a seed)."""

from __future__ import annotations

import math

import torch
from torch import nn

from mesh.runtime import ops


class TinyMLP(nn.Module):
    """``logits = W2 relu(W1 x + b1) + b2``."""

    def __init__(self, *, in_features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(ops.linear(x, self.fc1.weight, self.fc1.bias))
        return ops.linear(h, self.fc2.weight, self.fc2.bias)


def build(**config: int) -> TinyMLP:
    return TinyMLP(**config)


def init_weights(model: TinyMLP, generator: torch.Generator) -> None:
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn on CPU in a fixed order."""
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            fan_in = param.shape[-1] if name.endswith("weight") else model.fc1.in_features
            bound = 1.0 / math.sqrt(fan_in)
            param.copy_(torch.rand(param.shape, generator=generator) * 2 * bound - bound)
