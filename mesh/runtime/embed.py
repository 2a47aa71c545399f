"""Sentence embeddings (``kind = "embed"``): ``{"texts": [...]}`` to ``{"embeddings": [n, H]}``.

Texts longer than ``max_seq_len`` tokens are truncated, as sentence-transformers
does (256 for all-MiniLM-L6-v2), so results match it.
"""

from __future__ import annotations

from typing import Protocol

import torch

from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.convert import from_torch
from mesh.runtime.manifest import Manifest
from mesh.runtime.output import ModelOutput
from mesh.runtime.tokenize import HFTokenizer

DEFAULT_MAX_TEXTS = 64
MAX_TEXT_CHARS = 16_384  # long texts are truncated anyway; this bounds tokenizer work


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
        if params:
            raise InvalidInput(f"{self.manifest.name} takes no params")
        texts = inputs[self.input_name]
        assert isinstance(texts, list)  # check_schema ran first
        cap = self.manifest.limit("max_texts", DEFAULT_MAX_TEXTS)
        if len(texts) > cap:
            raise InvalidInput(f"{len(texts)} texts, {self.manifest.name} takes at most {cap}")
        for text in texts:
            if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
                raise InvalidInput(f"each text must be a string of at most {MAX_TEXT_CHARS} chars")

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
