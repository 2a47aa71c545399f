"""Loading a zoo entry: build, fill, check identity, move to the device.

A node serves a model only when the model_root computed from its weights equals
the one its manifest pins; a manifest without a pinned root (weights the
operator brings, e.g. ``gpt2``) is served under the computed root, with a log
line saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from mesh.core.model_root import format_root
from mesh.core.values import Values
from mesh.errors import ModelError
from mesh.runtime.classify import Classifier
from mesh.runtime.device import resolve_device, runtime_class, torch_dtype
from mesh.runtime.embed import Embedder
from mesh.runtime.generate import Generator
from mesh.runtime.manifest import Manifest
from mesh.runtime.output import ModelOutput, check_schema
from mesh.runtime.tokenize import (
    ByteTokenizer,
    HFTokenizer,
    TextTokenizer,
    read_tokenizer_config,
    special_token_text,
)
from mesh.runtime.weights import build_model, resolve_config, weights_folder

log = logging.getLogger(__name__)

Handler = Classifier | Embedder | Generator

__all__ = ["LoadedModel", "ModelOutput", "load_model"]


@dataclass
class LoadedModel:
    """A model ready to run on one device in one dtype."""

    name: str
    model_root: bytes
    manifest: Manifest
    device: str
    dtype: str
    module: torch.nn.Module
    handler: Handler = field(repr=False)

    def validate(self, inputs: Values, params: dict[str, int]) -> None:
        """Check one task's inputs and params. Raises mesh.errors.InvalidInput."""
        check_schema(self.manifest, inputs)
        self.handler.validate(inputs, params)

    def run_batch(self, items: list[tuple[Values, dict[str, int]]]) -> list[ModelOutput]:
        """Run validated tasks in one batch (blocking; call from a worker thread)."""
        return self.handler.run_batch(items)

    def runtime_claim(self, batch_size: int) -> dict[str, str | int | bool]:
        """The runtime class of this model's runs, plus the batch size."""
        return {**runtime_class(self.device, self.dtype), "batch_size": batch_size}

    def generator(self) -> Generator:
        """The generation handler. Raises ModelError for other kinds."""
        if not isinstance(self.handler, Generator):
            raise ModelError(f"{self.name} is not a language model")
        return self.handler


def load_model(
    manifest: Manifest,
    *,
    device: str,
    weights_dir: Path | None = None,
    dtype: str | None = None,
) -> LoadedModel:
    """Build and check a zoo entry.

    Args:
        manifest: the entry; the loaded model carries it with its ``config_file``
            merged in (see :func:`mesh.runtime.weights.resolve_config`).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        weights_dir: the operator's folder of weights (for ``file`` sources, or
            instead of a package's).
        dtype: run dtype (``float32``, ``float16``, ``bfloat16``); default the manifest's.

    Raises:
        ModelError: weights missing or unfit, or their root differs from the manifest's.
        ConfigError: bad device or dtype.
    """
    device = resolve_device(device)
    run_dtype = dtype or manifest.dtype
    tdtype = torch_dtype(run_dtype)
    manifest = resolve_config(manifest, weights_dir)
    module, root = build_model(manifest, weights_dir)
    if manifest.model_root is None:
        log.warning(
            "%s: manifest pins no model_root; serving the root computed from its weights, %s",
            manifest.name,
            format_root(root),
        )
    elif root != manifest.model_root:
        raise ModelError(
            f"model_root mismatch for {manifest.name}: manifest says "
            f"{format_root(manifest.model_root)}, weights give {format_root(root)}"
        )
    module = module.to(device=device, dtype=tdtype)
    handler = _handler(manifest, module, weights_dir, device=device, dtype=tdtype)
    runtime_class(device, run_dtype)  # runs the one-off batch-invariance self-check here, not later
    log.info("loaded %s (%s) on %s in %s", manifest.name, format_root(root), device, run_dtype)
    return LoadedModel(manifest.name, root, manifest, device, run_dtype, module, handler)


def _handler(
    manifest: Manifest,
    module: torch.nn.Module,
    weights_dir: Path | None,
    *,
    device: str,
    dtype: torch.dtype,
) -> Handler:
    if manifest.kind == "classify":
        return Classifier(manifest, module, device=device, dtype=dtype)
    tokenizer = _tokenizer(manifest, weights_dir)
    if manifest.kind == "embed":
        if not isinstance(tokenizer, HFTokenizer):
            raise ModelError(f"{manifest.name}: an embedding model needs an hf tokenizer")
        return Embedder(manifest, cast(Any, module), tokenizer, device=device, dtype=dtype)
    return Generator(
        manifest,
        cast(Any, module),
        tokenizer,
        device=device,
        dtype=dtype,
        eos_id=_eos_id(manifest, tokenizer, weights_dir),
    )


def _eos_id(
    manifest: Manifest, tokenizer: TextTokenizer | None, weights_dir: Path | None
) -> int | None:
    """The end-of-text id: ``[tokenizer] eos_id``, else one found through ``config_file``.

    With ``[tokenizer] config_file`` (a Hugging Face tokenizer_config.json next to the
    tokenizer), its ``eos_token`` is looked up in the tokenizer; a folder without that
    file, or a config naming none, falls back to the architecture config's
    ``eos_token_id``. Without either key the model has no end-of-text token.

    Raises:
        ModelError: the files name no single end-of-text token, or one the tokenizer lacks.
    """
    explicit: Any = manifest.tokenizer.get("eos_id")
    if explicit is not None:
        return int(explicit)
    config_file = manifest.tokenizer.get("config_file")
    if config_file is None:
        return None
    path = _tokenizer_folder(manifest, weights_dir) / str(config_file)
    if path.is_file() and isinstance(tokenizer, HFTokenizer):
        text = special_token_text(read_tokenizer_config(path), "eos_token")
        if text is not None:
            return tokenizer.token_id(text)
    eos = manifest.config.get("eos_token_id")
    if isinstance(eos, list) and len(eos) == 1:
        eos = eos[0]
    if isinstance(eos, int) and not isinstance(eos, bool) and eos >= 0:
        return eos
    # Several end ids (Llama 3.1's config lists three): the runtime stops at one only.
    raise ModelError(
        f"{manifest.name}: no single end-of-text token ({path} names no eos_token, the "
        f"config's eos_token_id is {eos!r}); set [tokenizer] eos_id in the manifest"
    )


def _tokenizer_folder(manifest: Manifest, weights_dir: Path | None) -> Path:
    """Where tokenizer files are: the weights folder, or the entry's own for seeded weights."""
    return weights_folder(manifest, weights_dir) or manifest.folder


def _tokenizer(manifest: Manifest, weights_dir: Path | None) -> TextTokenizer | None:
    kind = manifest.tokenizer.get("kind")
    if kind == "bytes":
        return ByteTokenizer()
    if kind != "hf":
        return None
    path = _tokenizer_folder(manifest, weights_dir) / str(
        manifest.tokenizer.get("file", "tokenizer.json")
    )
    if not path.is_file():
        if manifest.tokenizer.get("optional", False):
            log.info("%s: no tokenizer at %s; prompts must be token ids", manifest.name, path)
            return None
        raise ModelError(f"tokenizer of {manifest.name} not found at {path}")
    return HFTokenizer(
        path,
        max_length=int(manifest.tokenizer.get("max_length", 0)),
        special_tokens=bool(manifest.tokenizer.get("special_tokens", True)),
    )
