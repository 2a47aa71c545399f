"""Reading JSON request fields: each read once, values checked, leftovers refused.

The building blocks of :mod:`mesh.gateway.schemas`; pure functions, every
refusal a 400 :class:`~mesh.gateway.errors.ApiError` naming the field.
"""

from __future__ import annotations

import math
from typing import Any

from mesh.gateway.errors import ApiError, bad_request, unsupported

MAX_STOP_SEQUENCES = 4  # OpenAI's cap
MAX_STOP_CHARS = 256  # a stop sequence is a marker, not a document
MAX_MESSAGES = 256  # a conversation longer than this is over any zoo model's context


class Fields:
    """Reads a JSON object's fields one by one and refuses those left unread."""

    def __init__(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        self._body: dict[str, Any] = body
        self._read: set[str] = set()

    def get(self, name: str) -> Any:
        """The value of ``name``, None when absent or null."""
        self._read.add(name)
        return self._body.get(name)

    def only_default(self, name: str, *defaults: Any, why: str) -> None:
        """Accept ``name`` only absent, null or at a value that changes nothing."""
        value = self.get(name)
        if value is not None and not any(_same(value, d) for d in defaults):
            raise unsupported(name, why)

    def finish(self) -> None:
        """Refuse any field that was not read."""
        left = sorted(set(self._body) - self._read)
        if left:
            raise ApiError(
                400,
                f"unknown parameter: {left[0]}",
                param=left[0],
                code="unknown_parameter",
            )


def _same(value: Any, default: Any) -> bool:
    # 1 == True in Python; a boolean must never pass for a number or back.
    return type(value) is type(default) and bool(value == default)


def read_number(fields: Fields, name: str, *, default: float, low: float, high: float) -> float:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"{name} must be a number", param=name)
    if not low <= value <= high:
        raise bad_request(f"{name} must be in [{low}, {high}]", param=name)
    return float(value)


def read_stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(items, list)
        or len(items) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in items)
    ):
        raise bad_request(
            f"stop must be a string or a list of at most {MAX_STOP_SEQUENCES} non-empty "
            f"strings of at most {MAX_STOP_CHARS} chars",
            param="stop",
        )
    return tuple(items)


_ROLES = ("system", "developer", "user", "assistant")
_MESSAGE_KEYS = {"role", "content", "name"}


def read_messages(raw: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages must be a non-empty list", param="messages")
    if len(raw) > MAX_MESSAGES:
        raise bad_request(f"at most {MAX_MESSAGES} messages", param="messages")
    out = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object", param=where)
        extra = sorted(k for k, v in message.items() if k not in _MESSAGE_KEYS and v is not None)
        if extra:
            raise unsupported(f"{where}.{extra[0]}", "only role, content and name are supported")
        role = message.get("role")
        if role not in _ROLES:
            raise bad_request(f"{where}.role must be one of {', '.join(_ROLES)}", param=where)
        item = {"role": role, "content": _content(message.get("content"), where)}
        name = message.get("name")
        if name is not None:
            if not isinstance(name, str):
                raise bad_request(f"{where}.name must be a string", param=where)
            item["name"] = name
        out.append(item)
    return tuple(out)


def _content(raw: Any, where: str) -> str:
    """A message's text: a string, or its text parts joined by newlines as vLLM
    joins them (other kinds of parts are refused)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        texts = []
        for part in raw:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise unsupported(f"{where}.content", "only text parts are supported")
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_request(f"{where}.content: a text part needs text", param=where)
            texts.append(text)
        return "\n".join(texts)
    raise bad_request(f"{where}.content must be a string or a list of text parts", param=where)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
