"""Response bodies in OpenAI's shapes, built from verified mesh outputs (pure functions).

A worker's outputs were verified against its receipt, but the receipt proves
only what was computed, not that it fits the model's schema: outputs of the
wrong form are a worker's fault, answered 502, never a crash.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mesh.client.jsonvalues import tensor_to_nested
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.gateway.errors import SERVER, ApiError

OWNED_BY = "mesh"


@dataclass(frozen=True, slots=True)
class Generation:
    """A language model's answer, cut at a stop sequence.

    Attributes:
        text: the text returned to the caller.
        token_ids: every token the worker emitted (and its receipt covers).
        finish_reason: ``stop`` (end-of-text token or stop sequence) or ``length``.
    """

    text: str
    token_ids: list[int]
    finish_reason: str


def bad_outputs(why: str) -> ApiError:
    """A 502 for verified outputs that do not fit the model's schema."""
    message = f"the worker's outputs do not fit the model: {why}"
    return ApiError(502, message, type=SERVER, code="bad_worker_output")


def read_generation(
    outputs: Values, *, eos_id: int | None, max_tokens: int, stop: Sequence[str]
) -> Generation:
    """The text and finish reason of a generate model's outputs.

    The text is cut before the earliest stop sequence (OpenAI leaves the stop
    sequence out). ``finish_reason`` is ``stop`` for a stop sequence or the
    model's end-of-text token, ``length`` when ``max_tokens`` ran out.

    Raises:
        ApiError: 502 when ``text`` or ``token_ids`` are missing or malformed.
    """
    texts = outputs.get("text")
    ids = outputs.get("token_ids")
    if not isinstance(texts, list) or len(texts) != 1 or not isinstance(texts[0], str):
        raise bad_outputs("text must hold one string")
    if not isinstance(ids, Tensor) or ids.dtype != "int64" or len(ids.shape) != 1:
        raise bad_outputs("token_ids must be a 1-D int64 tensor")
    token_ids = [int(i) for i in tensor_to_nested(ids)]
    text = texts[0]
    cuts = [text.find(s) for s in stop if s in text]
    if cuts:
        return Generation(text[: min(cuts)], token_ids, "stop")
    if token_ids and eos_id is not None and token_ids[-1] == eos_id:
        return Generation(text, token_ids, "stop")
    return Generation(text, token_ids, "length" if len(token_ids) >= max_tokens else "stop")


def read_embeddings(outputs: Values, *, name: str, rows: int) -> list[list[float]]:
    """The ``rows`` embedding vectors of an embed model's output ``name``.

    Raises:
        ApiError: 502 when the output is missing, not a float matrix, or has another row count.
    """
    tensor = outputs.get(name)
    if (
        not isinstance(tensor, Tensor)
        or tensor.dtype not in ("float32", "float16", "bfloat16", "float64")
        or len(tensor.shape) != 2
        or tensor.shape[0] != rows
    ):
        raise bad_outputs(f"{name} must be a float matrix with {rows} rows")
    vectors: list[list[float]] = tensor_to_nested(tensor)
    if not all(math.isfinite(x) for row in vectors for x in row):
        raise bad_outputs(f"{name} holds NaN or infinite values")  # JSON cannot carry them
    return vectors


def usage(prompt_tokens: int, completion_tokens: int | None = None) -> dict[str, int]:
    """OpenAI's usage object (embeddings have no completion tokens)."""
    counts = {"prompt_tokens": prompt_tokens}
    if completion_tokens is not None:
        counts["completion_tokens"] = completion_tokens
    counts["total_tokens"] = prompt_tokens + (completion_tokens or 0)
    return counts


def embedding_list(
    vectors: Sequence[Sequence[float]], *, model: str, as_base64: bool, prompt_tokens: int
) -> dict[str, Any]:
    """The body of an embeddings response.

    ``base64`` vectors are little-endian float32 bytes, as OpenAI sends them
    (and its Python client asks for by default).
    """
    data = []
    for index, vector in enumerate(vectors):
        value: Any = list(vector)
        if as_base64:
            packed = struct.pack(f"<{len(vector)}f", *vector)
            value = base64.b64encode(packed).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {"object": "list", "data": data, "model": model, "usage": usage(prompt_tokens)}


def completion(
    generation: Generation, *, id: str, model: str, created: int, prompt_tokens: int
) -> dict[str, Any]:
    """The body of a ``text_completion``."""
    return {
        "id": f"cmpl-{id}",
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": generation.text,
                "logprobs": None,
                "finish_reason": generation.finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, len(generation.token_ids)),
    }


def chat_completion(
    generation: Generation, *, id: str, model: str, created: int, prompt_tokens: int
) -> dict[str, Any]:
    """The body of a ``chat.completion``."""
    return {
        "id": f"chatcmpl-{id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": generation.text},
                "logprobs": None,
                "finish_reason": generation.finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, len(generation.token_ids)),
    }


def model_object(
    name: str, *, created: int, model_root: bytes, workers: int, kind: str
) -> dict[str, Any]:
    """One entry of ``GET /v1/models``, with the mesh's fields."""
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": OWNED_BY,
        "model_root": model_root.hex(),
        "workers": workers,
        "kind": kind,
    }
