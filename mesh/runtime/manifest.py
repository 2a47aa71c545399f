"""Zoo manifests: what a model is, what it takes, where its weights come from.

A manifest is a TOML file, ``<entry>/manifest.toml``::

    name = "tiny-mlp"
    kind = "classify"            # classify | embed | generate
    model_root = "ab12..."       # hex; optional only where weights are the operator's
    dtype = "float32"            # default run dtype
    [architecture]               # file resolved in the entry folder; "builtin:<entry>/<file>"
    file = "model.py"            # names a file of the installed zoo
    config = { ... }             # keyword arguments of the file's build(**config)
    config_file = "config.json"  # optional: a JSON object of more arguments, read from the
                                 # weights folder (the entry folder for seed weights); the
                                 # manifest's own config wins where both name a key
    [weights]                    # source = seed | package | file | folder
    [inputs.<name>] / [outputs.<name>]   dtype ("str" for a list of strings), shape (-1 = any)
    [limits]                     # max_rows, max_seq_len, max_tokens, max_texts, max_prompt_tokens
    [tolerance.<dtype>]          # output_abs, hidden_abs, logit_abs, prob_abs (measured, see there)
    [commitment]                 # chunk, k (generate only)

Floats are fine here: a manifest is local configuration, never signed.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mesh.errors import ModelError

KINDS = ("classify", "embed", "generate")
SOURCES = ("seed", "package", "file", "folder")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: a dtype (``"str"`` for a list of strings) and a shape."""

    dtype: str
    shape: tuple[int, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class Tolerance:
    """How far honest runs in another runtime class may differ (absolute).

    Attributes:
        output_abs: per element of float outputs (logits, embeddings).
        hidden_abs: per committed activation value.
        logit_abs: per recomputed logit, for the sampling check.
    """

    output_abs: float = 0.0
    hidden_abs: float = 0.0
    logit_abs: float = 0.0


@dataclass(frozen=True)
class Manifest:
    """A parsed zoo entry. ``folder`` is where the entry lives."""

    name: str
    kind: str
    folder: Path
    architecture_file: str
    config: dict[str, Any]
    weights: dict[str, Any]
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    model_root: bytes | None = None
    dtype: str = "float32"
    limits: dict[str, int] = field(default_factory=dict)
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    commitment: dict[str, int] = field(default_factory=dict)
    description: str = ""
    config_file: str = ""

    def limit(self, key: str, default: int) -> int:
        """A named limit from ``[limits]``, or ``default``."""
        return int(self.limits.get(key, default))

    def tolerance(self, *dtypes: str) -> Tolerance:
        """Tolerance for comparing runs made in ``dtypes``: the loosest that applies.

        Raises:
            ModelError: the manifest gives no tolerance for one of the dtypes.
        """
        found = []
        for name in dtypes:
            if name not in self.tolerances:
                raise ModelError(f"manifest of {self.name} has no tolerance for {name}")
            found.append(self.tolerances[name])
        return Tolerance(
            output_abs=max(t.output_abs for t in found),
            hidden_abs=max(t.hidden_abs for t in found),
            logit_abs=max(t.logit_abs for t in found),
        )


def load_manifest(path: Path) -> Manifest:
    """Read and check ``path`` (a manifest.toml).

    Raises:
        ModelError: unreadable, not TOML, or a field is missing or wrong.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"cannot read manifest {path}: {exc}") from exc
    try:
        return _parse(raw, path.parent)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"bad manifest {path}: {exc!r}") from exc


def _parse(raw: dict[str, Any], folder: Path) -> Manifest:
    name = str(raw["name"])
    kind = str(raw["kind"])
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    root_hex = raw.get("model_root")
    model_root = bytes.fromhex(root_hex) if root_hex else None
    if model_root is not None and len(model_root) != 32:
        raise ValueError("model_root must be 32 bytes of hex")
    arch = raw["architecture"]
    weights = dict(raw["weights"])
    if weights.get("source") not in SOURCES:
        raise ValueError(f"weights.source must be one of {SOURCES}")
    return Manifest(
        name=name,
        kind=kind,
        folder=folder,
        architecture_file=str(arch["file"]),
        config=dict(arch.get("config", {})),
        weights=weights,
        inputs={k: _spec(v) for k, v in raw["inputs"].items()},
        outputs={k: _spec(v) for k, v in raw["outputs"].items()},
        model_root=model_root,
        dtype=str(raw.get("dtype", "float32")),
        limits={k: int(v) for k, v in raw.get("limits", {}).items()},
        tolerances={
            k: Tolerance(**{f: float(x) for f, x in v.items()})
            for k, v in raw.get("tolerance", {}).items()
        },
        tokenizer=dict(raw.get("tokenizer", {})),
        commitment={k: int(v) for k, v in raw.get("commitment", {}).items()},
        description=str(raw.get("description", "")),
        config_file=str(arch.get("config_file", "")),
    )


def with_config_file(manifest: Manifest, folder: Path) -> Manifest:
    """The manifest with its ``config_file`` (a JSON object in ``folder``) merged under its config.

    Keys of the manifest's own ``config`` win, so an operator's manifest can pin
    or override what a checkpoint's ``config.json`` says. Without a
    ``config_file`` the manifest comes back unchanged; merging twice gives the same.

    Raises:
        ModelError: the file is missing, unreadable, not JSON, or not a JSON object.
    """
    if not manifest.config_file:
        return manifest
    path = folder / manifest.config_file
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{manifest.name}: architecture config {path} not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{manifest.name}: cannot read architecture config {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ModelError(f"{manifest.name}: architecture config {path} is not a JSON object")
    return replace(manifest, config={**loaded, **manifest.config})


def _spec(value: dict[str, Any]) -> TensorSpec:
    return TensorSpec(
        str(value["dtype"]),
        tuple(int(d) for d in value.get("shape", ())),
        bool(value.get("optional", False)),
    )
