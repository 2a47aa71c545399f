"""Classifiers (``kind = "classify"``): ``{"x": [n, D]}`` to ``{"logits": [n, C]}``.

The rows of all tasks of a batch go through one forward pass.
"""

from __future__ import annotations

import torch

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.runtime.checks import check_classify
from mesh.runtime.convert import from_torch, to_torch
from mesh.runtime.manifest import Manifest
from mesh.runtime.output import ModelOutput


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
        # The same torch-free rules a client checks before sending.
        check_classify(self.manifest, inputs, params)

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
