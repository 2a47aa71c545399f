"""Checks of a task's inputs and params against its model's manifest, without torch.

Both sides use these: a worker before it admits a task (through its model's
``validate``, :mod:`mesh.runtime.registry`), and a client before it sends one
(:mod:`mesh.client.precheck`), so that ``invalid-input`` from a worker means the
worker is at fault. One implementation of each rule: the sampling params
(:class:`SamplingParams`), the schema (:func:`mesh.runtime.output.check_schema`),
the caps of each kind of model, and finite float inputs.

What a client cannot check without the model's files is left to the worker:
the exact token count of a text prompt needs the tokenizer, which a client has
only for byte-level models and zoo entries that ship their tokenizer file
(:func:`prompt_token_count` returns None otherwise; the worker checks then).

Imports no torch (``tests/unit/test_public_api.py`` holds the client to it);
numpy and the ``tokenizers`` library are imported only when a check needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.manifest import Manifest
from mesh.runtime.output import check_schema

MAX_SEED = 2**63 - 1
# Defaults of the runtime's handlers when the manifest sets no [limits] entry.
DEFAULT_MAX_ROWS = 64
DEFAULT_MAX_TEXTS = 64
DEFAULT_MAX_TOKENS = 64
DEFAULT_MAX_PROMPT_TOKENS = 256
MAX_TEXT_CHARS = 16_384  # embeddings truncate long texts anyway; this bounds tokenizer work
# A prompt of more characters than this many per allowed token cannot fit:
# refused before any tokenizer runs (bounds its work).
MAX_CHARS_PER_TOKEN = 8

# Per float dtype: (unsigned view, exponent bits): all exponent bits set is inf or NaN.
_EXPONENT_BITS: dict[str, tuple[str, int]] = {
    "float32": ("<u4", 0x7F800000),
    "float64": ("<u8", 0x7FF0000000000000),
    "float16": ("<u2", 0x7C00),
    "bfloat16": ("<u2", 0x7F80),
}


@dataclass(frozen=True)
class SamplingParams:
    """Integer sampling parameters, as signed in a task."""

    seed: int = 0
    max_tokens: int = 16
    temperature_milli: int = 0
    top_k: int = 0
    top_p_milli: int = 1000

    @property
    def greedy(self) -> bool:
        return self.temperature_milli == 0

    @classmethod
    def from_params(cls, params: dict[str, int], *, max_tokens_cap: int) -> SamplingParams:
        """Check and read task params.

        Raises:
            InvalidInput: an unknown key, a non-integer, or a value out of range.
        """
        known = {"seed", "max_tokens", "temperature_milli", "top_k", "top_p_milli"}
        unknown = set(params) - known
        if unknown:
            raise InvalidInput(f"unknown params: {', '.join(sorted(unknown))}")
        for key, value in params.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidInput(f"param {key} must be an integer")
        p = cls(**params)
        if not 0 <= p.seed <= MAX_SEED:
            raise InvalidInput("seed must be in [0, 2^63)")
        if not 1 <= p.max_tokens <= max_tokens_cap:
            raise InvalidInput(f"max_tokens must be in [1, {max_tokens_cap}], not {p.max_tokens}")
        if not 0 <= p.temperature_milli <= 100_000:
            raise InvalidInput("temperature_milli must be in [0, 100000]")
        if p.top_k < 0:
            raise InvalidInput("top_k must be >= 0 (0 = off)")
        if not 1 <= p.top_p_milli <= 1000:
            raise InvalidInput("top_p_milli must be in [1, 1000] (1000 = off)")
        return p


def check_task(manifest: Manifest, inputs: Values, params: dict[str, int]) -> None:
    """Everything about a task that can be checked from its model's manifest alone.

    Raises:
        InvalidInput: the inputs or params do not fit the model.
    """
    check_schema(manifest, inputs)
    if manifest.kind == "classify":
        check_classify(manifest, inputs, params)
    elif manifest.kind == "embed":
        check_embed(manifest, inputs, params)
    else:
        check_generate(manifest, inputs, params)


def check_classify(manifest: Manifest, inputs: Values, params: dict[str, int]) -> None:
    """A classifier takes no params, at most ``max_rows`` rows, and finite numbers."""
    if params:
        raise InvalidInput(f"{manifest.name} takes no params")
    for name in manifest.inputs:
        x = inputs.get(name)
        if not isinstance(x, Tensor):
            continue
        cap = manifest.limit("max_rows", DEFAULT_MAX_ROWS)
        if x.shape and x.shape[0] > cap:
            raise InvalidInput(f"{x.shape[0]} rows, {manifest.name} takes at most {cap}")
        check_finite(name, x)


def check_embed(manifest: Manifest, inputs: Values, params: dict[str, int]) -> None:
    """An embedding model takes no params and at most ``max_texts`` texts of bounded length."""
    if params:
        raise InvalidInput(f"{manifest.name} takes no params")
    for name in manifest.inputs:
        texts = inputs.get(name)
        if not isinstance(texts, list):
            continue
        cap = manifest.limit("max_texts", DEFAULT_MAX_TEXTS)
        if len(texts) > cap:
            raise InvalidInput(f"{len(texts)} texts, {manifest.name} takes at most {cap}")
        for text in texts:
            if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
                raise InvalidInput(f"each text must be a string of at most {MAX_TEXT_CHARS} chars")


def check_generate(manifest: Manifest, inputs: Values, params: dict[str, int]) -> None:
    """Sampling params, one prompt (text or ids), and that prompt plus tokens fit."""
    p = SamplingParams.from_params(
        params, max_tokens_cap=manifest.limit("max_tokens", DEFAULT_MAX_TOKENS)
    )
    max_prompt = manifest.limit("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS)
    has_text, has_ids = "prompt" in inputs, "prompt_ids" in inputs
    if has_text == has_ids:
        raise InvalidInput("give exactly one of prompt (text) or prompt_ids")
    count: int | None
    if has_text:
        texts = inputs["prompt"]
        if not isinstance(texts, list) or len(texts) != 1:
            raise InvalidInput("prompt must hold exactly one text")
        if len(texts[0]) > MAX_CHARS_PER_TOKEN * max_prompt:
            raise InvalidInput(f"prompt longer than {max_prompt} tokens")
        count = prompt_token_count(manifest, texts[0])
    else:
        raw = inputs["prompt_ids"]
        if not isinstance(raw, Tensor):
            raise InvalidInput("prompt_ids must be a tensor")
        if raw.numel > max_prompt:
            raise InvalidInput(f"prompt longer than {max_prompt} tokens")
        vocab = manifest.config.get("vocab_size")
        ids = _ints(raw)
        if isinstance(vocab, int) and ids and (min(ids) < 0 or max(ids) >= vocab):
            raise InvalidInput(f"token ids must be in [0, {vocab})")
        count = len(ids)
    if count is None:
        return  # the worker counts the tokens (its tokenizer)
    if count == 0:
        raise InvalidInput("empty prompt")
    if count > max_prompt:
        raise InvalidInput(f"prompt has {count} tokens, at most {max_prompt}")
    positions = _positions(manifest)
    if positions is not None and count + p.max_tokens > positions:
        raise InvalidInput(
            f"prompt ({count}) + max_tokens ({p.max_tokens}) exceeds {positions} positions"
        )


def prompt_token_count(manifest: Manifest, text: str) -> int | None:
    """Tokens of a text prompt, when this side has the model's tokenizer; else None.

    Byte-level models (``[tokenizer] kind = "bytes"``) need no file; a Hugging
    Face tokenizer is read when the zoo entry ships it (seeded weights: the
    tokenizer file sits in the entry's folder).
    """
    kind = manifest.tokenizer.get("kind")
    if kind == "bytes":
        from mesh.runtime.tokenize import ByteTokenizer

        return len(ByteTokenizer().encode(text))
    if kind != "hf" or manifest.weights.get("source") != "seed":
        return None
    path = manifest.folder / str(manifest.tokenizer.get("file", "tokenizer.json"))
    if not path.is_file():
        return None
    from mesh.runtime.tokenize import HFTokenizer

    tokenizer = HFTokenizer(
        path,
        max_length=int(manifest.tokenizer.get("max_length", 0)),
        special_tokens=bool(manifest.tokenizer.get("special_tokens", True)),
    )
    return len(tokenizer.encode(text))


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise InvalidInput if a float tensor holds NaN or infinity (integers always pass)."""
    bits = _EXPONENT_BITS.get(tensor.dtype)
    if bits is None:
        return
    import numpy as np

    view, exponent = bits
    raw = np.frombuffer(tensor.data, dtype=np.dtype(view))
    if np.any((raw & np.array(exponent, dtype=raw.dtype)) == exponent):
        raise InvalidInput(f"input {name!r} holds NaN or infinity")


def _ints(tensor: Tensor) -> list[int]:
    import numpy as np

    if tensor.dtype not in ("int64", "int32", "int16", "int8", "uint8"):
        raise InvalidInput(f"prompt_ids must be integers, not {tensor.dtype}")
    return [
        int(i) for i in np.frombuffer(tensor.data, dtype=np.dtype(tensor.dtype).newbyteorder("<"))
    ]


def _positions(manifest: Manifest) -> int | None:
    config: dict[str, Any] = manifest.config
    for key in ("n_positions", "max_position_embeddings"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None
