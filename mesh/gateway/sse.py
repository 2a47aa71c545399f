"""Server-sent events in the form OpenAI's streaming clients read.

A stream is a sequence of ``data: <json>`` events, each ended by a blank line,
closed by ``data: [DONE]``. Chunks are ``chat.completion.chunk`` (a ``delta``
per choice) or ``text_completion`` objects (a ``text`` per choice).

:mod:`mesh.gateway.streaming` says which events a streamed request gets.
"""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"


def encode_event(data: Any, *, event: str | None = None, id: str | None = None) -> bytes:
    """One event: ``data`` as compact JSON (or a string as is), then a blank line.

    A string with line breaks becomes one ``data:`` line per line, as the SSE
    format requires (a reader joins them back with newlines).

    Raises:
        ValueError: ``event`` or ``id`` holds a line break (it would end the field).
    """
    lines: list[str] = []
    for name, value in (("event", event), ("id", id)):
        if value is not None:
            if "\n" in value or "\r" in value:
                raise ValueError(f"an SSE {name} cannot hold a line break")
            lines.append(f"{name}: {value}")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    lines.extend(f"data: {part}" for part in text.replace("\r\n", "\n").split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def chat_chunk(
    *,
    id: str,
    model: str,
    created: int,
    content: str | None = None,
    role: str | None = None,
    finish_reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` for choice 0: a role, a piece of text, or the end."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    chunk: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    chunk.update(extra or {})
    return chunk


def completion_chunk(
    *,
    id: str,
    model: str,
    created: int,
    text: str,
    finish_reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A streamed ``text_completion`` object for choice 0."""
    chunk: dict[str, Any] = {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    chunk.update(extra or {})
    return chunk
