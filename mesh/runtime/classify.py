"""Classifiers (``kind = "classify"``): ``{"x": [n, D]}`` to ``{"logits": [n, C]}``.

The rows of all tasks of a batch go through one forward pass.
"""

from __future__ import annotations

import torch

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.convert import from_torch, to_torch
from mesh.runtime.manifest import Manifest
from mesh.runtime.output import ModelOutput

DEFAULT_MAX_ROWS = 64


class Classifier:
    """Runs a module mapping ``[N, D]`` to ``[N, C]``."""

    def __init__(
        self, manifest: Manifest, module: torch.nn.Module, *, device: str, dtype: torch.dtype
    ) -> None:
        self.manifest = manifest
        self.module = module
        self.device = device
        self.dtype = dtype
        (self.input_name,) = manifest.inputs
        (self.output_name,) = manifest.outputs

    def validate(self, inputs: Values, params: dict[str, int]) -> None:
        if params:
            raise InvalidInput(f"{self.manifest.name} takes no params")
        x = inputs[self.input_name]
        assert isinstance(x, Tensor)
        cap = self.manifest.limit("max_rows", DEFAULT_MAX_ROWS)
        if x.shape[0] > cap:
            raise InvalidInput(f"{x.shape[0]} rows, {self.manifest.name} takes at most {cap}")
        if not torch.isfinite(to_torch(x)).all():
            raise InvalidInput("inputs hold NaN or infinity")

    def run_batch(self, items: list[tuple[Values, dict[str, int]]]) -> list[ModelOutput]:
        xs = []
        for inputs, _ in items:
            x = inputs[self.input_name]
            assert isinstance(x, Tensor)
            xs.append(to_torch(x))
        counts = [int(x.shape[0]) for x in xs]
        batch = torch.cat(xs).to(self.device, self.dtype)
        with torch.inference_mode():
            logits = self.module(batch).float().cpu()
        return [ModelOutput({self.output_name: from_torch(part)}) for part in logits.split(counts)]
