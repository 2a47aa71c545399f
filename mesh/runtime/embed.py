"""Sentence embeddings (``kind = "embed"``): ``{"texts": [...]}`` to ``{"embeddings": [n, H]}``.

Texts longer than ``max_seq_len`` tokens are truncated, as sentence-transformers
does (256 for all-MiniLM-L6-v2), so results match it.
"""

from __future__ import annotations

from typing import Protocol

import torch

from mesh.core.values import Values
from mesh.runtime.checks import DEFAULT_MAX_TEXTS, MAX_TEXT_CHARS, check_embed
from mesh.runtime.convert import from_torch
from mesh.runtime.manifest import Manifest
from mesh.runtime.output import ModelOutput
from mesh.runtime.tokenize import HFTokenizer

# The caps live with the torch-free checks (mesh.runtime.checks); named here too
# for code that read them from this module.
__all__ = ["DEFAULT_MAX_TEXTS", "MAX_TEXT_CHARS", "Embedder", "Encoder"]


class Encoder(Protocol):
    """What an embedding architecture offers (see ``models/minilm-l6/model.py``)."""

    def encode(self, ids: list[torch.Tensor]) -> torch.Tensor: ...


class Embedder:
    """Runs a module with ``encode(list of 1-D id tensors) -> [n, H]``."""

    def __init__(
        self,
        manifest: Manifest,
        module: Encoder,
        tokenizer: HFTokenizer,
        *,
        device: str,
        dtype: torch.dtype,
    ) -> None:
        self.manifest = manifest
        self.module = module
        self.tokenizer = tokenizer
        self.device = device
        (self.input_name,) = manifest.inputs
        (self.output_name,) = manifest.outputs

    def validate(self, inputs: Values, params: dict[str, int]) -> None:
        # The same torch-free rules a client checks before sending.
        check_embed(self.manifest, inputs, params)

    def run_batch(self, items: list[tuple[Values, dict[str, int]]]) -> list[ModelOutput]:
        ids: list[torch.Tensor] = []
        counts = []
        for inputs, _ in items:
            texts = inputs[self.input_name]
            assert isinstance(texts, list)
            counts.append(len(texts))
            for text in texts:
                encoded = self.tokenizer.encode(text)
                ids.append(torch.tensor(encoded, dtype=torch.int64, device=self.device))
        with torch.inference_mode():
            out = self.module.encode(ids).float().cpu()
        return [
            ModelOutput({self.output_name: from_torch(part)}) for part in torch.split(out, counts)
        ]
