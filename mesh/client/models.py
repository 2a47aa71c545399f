"""Model names to model_roots, torch-free.

A client names a model ("tiny-mlp") or gives its hex model_root. Names are
looked up in zoo manifests (``<zoo>/<entry>/manifest.toml``, keys ``name`` and
``model_root``: the format of ``mesh.runtime.manifest``), reading only the TOML
so that resolving a name never imports torch (``mesh.runtime`` may).
"""

from __future__ import annotations

import functools
import importlib.resources
import tomllib
from collections.abc import Sequence
from pathlib import Path

from mesh.errors import ConfigError, ModelError

ROOT_HEX_CHARS = 64


def builtin_zoo() -> Path | None:
    """The installed zoo folder (``mesh._zoo``), or None when it is not installed."""
    try:
        return Path(str(importlib.resources.files("mesh._zoo")))
    except ModuleNotFoundError:
        return None


def parse_hex_root(text: str) -> bytes | None:
    """The 32-byte root when ``text`` is 64 hex digits, else None."""
    if len(text) != ROOT_HEX_CHARS:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def manifest_roots(zoo_dirs: Sequence[Path] = ()) -> dict[str, bytes | None]:
    """Model name -> pinned root (None when the manifest pins none), first zoo wins.

    Operator zoos in ``zoo_dirs`` come before the built-in one.
    """
    folders = list(zoo_dirs)
    builtin = builtin_zoo()
    if builtin is not None:
        folders.append(builtin)
    found: dict[str, bytes | None] = {}
    for folder in folders:
        for manifest in sorted(Path(folder).glob("*/manifest.toml")):
            try:
                raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read zoo manifest {manifest}: {exc}") from exc
            name = raw.get("name")
            if not isinstance(name, str) or name in found:
                continue
            root = raw.get("model_root")
            found[name] = parse_hex_root(root) if isinstance(root, str) else None
    return found


@functools.lru_cache(maxsize=64)
def _cached_roots(zoo_dirs: tuple[Path, ...]) -> dict[str, bytes | None]:
    # Manifests are read once per process: resolving a name on every run()
    # would parse every TOML file of the zoo each time (milliseconds per task).
    return manifest_roots(zoo_dirs)


def resolve_model(model: str | bytes, *, zoo_dirs: Sequence[Path] = ()) -> bytes:
    """The model_root of ``model``: 32 raw bytes, 64 hex digits, or a zoo name.

    Raises:
        ModelError: unknown name, or a manifest without a pinned root (then the
            hex root must be given, e.g. for gpt2 with operator weights).
    """
    if isinstance(model, bytes):
        if len(model) != 32:
            raise ModelError("a raw model_root is 32 bytes")
        return model
    root = parse_hex_root(model)
    if root is not None:
        return root
    roots = _cached_roots(tuple(zoo_dirs))
    if model not in roots:
        known = ", ".join(sorted(roots)) or "none"
        raise ModelError(f"unknown model {model!r} (known: {known}; or give a hex model_root)")
    pinned = roots[model]
    if pinned is None:
        raise ModelError(
            f"the manifest of {model!r} pins no model_root (operator weights): give the hex root"
        )
    return pinned


def text_input_name(model: str, *, zoo_dirs: Sequence[Path] = ()) -> str:
    """The name of the model's list-of-strings input (``texts``, ``prompt``...).

    Read from the manifest's ``[inputs.<name>]`` with ``dtype = "str"``; models
    not in a zoo (hex roots) get ``"texts"``.
    """
    for folder in [*zoo_dirs, *([builtin_zoo()] if builtin_zoo() else [])]:
        assert folder is not None
        for manifest in sorted(Path(folder).glob("*/manifest.toml")):
            try:
                raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
                continue
            if raw.get("name") != model and raw.get("model_root") != model:
                continue
            specs = raw.get("inputs", {})
            for name, spec in specs.items() if isinstance(specs, dict) else ():
                if isinstance(spec, dict) and spec.get("dtype") == "str":
                    return str(name)
    return "texts"
