"""Model names to model_roots, torch-free.

A client names a model ("tiny-mlp") or gives its hex model_root. Names are
looked up in the zoo manifests through :mod:`mesh.runtime.zoo`, which reads
only TOML (the ``mesh.runtime`` package imports nothing on its own, so this
never pulls in torch; ``tests/unit/test_public_api.py`` checks it). Operator
zoo folders come before the built-in one. Zoos are read once per process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mesh.errors import ModelError
from mesh.runtime.zoo import manifests

ROOT_HEX_CHARS = 64


def parse_hex_root(text: str) -> bytes | None:
    """The 32-byte root when ``text`` is 64 hex digits, else None."""
    if len(text) != ROOT_HEX_CHARS:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def manifest_roots(zoo_dirs: Sequence[Path] = ()) -> dict[str, bytes | None]:
    """Model name -> pinned root (None when the manifest pins none), first zoo wins."""
    return {name: m.model_root for name, m in manifests(zoo_dirs).items()}


def resolve_model(model: str | bytes, *, zoo_dirs: Sequence[Path] = ()) -> bytes:
    """The model_root of ``model``: 32 raw bytes, 64 hex digits, or a zoo name.

    Raises:
        ModelError: unknown name, or a manifest without a pinned root (then the
            hex root must be given, e.g. for gpt2 with operator weights).
        ConfigError: a zoo folder that does not exist.
    """
    if isinstance(model, bytes):
        if len(model) != 32:
            raise ModelError("a raw model_root is 32 bytes")
        return model
    root = parse_hex_root(model)
    if root is not None:
        return root
    known = manifests(zoo_dirs)
    if model not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise ModelError(f"unknown model {model!r} (known: {listed}; or give a hex model_root)")
    pinned = known[model].model_root
    if pinned is None:
        raise ModelError(
            f"the manifest of {model!r} pins no model_root (operator weights): give the hex root"
        )
    return pinned


def text_input_name(model: str, *, zoo_dirs: Sequence[Path] = ()) -> str:
    """The name of the model's list-of-strings input (``texts``, ``prompt``...).

    From the manifest's ``[inputs.<name>]`` with ``dtype = "str"``; models not
    in a zoo (hex roots) get ``"texts"``.
    """
    manifest = manifests(zoo_dirs).get(model)
    if manifest is not None:
        for name, spec in manifest.inputs.items():
            if spec.dtype == "str":
                return name
    return "texts"
