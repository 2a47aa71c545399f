"""Request bodies in OpenAI's shapes, checked and read into small frozen objects.

Pure functions of the decoded JSON: no I/O, no model knowledge (limits that
depend on the model are checked by :mod:`mesh.gateway.service`). Nothing is
silently ignored: a field the mesh cannot honour is refused with a 400 naming
it, unless it carries the value that changes nothing (``n: 1``,
``presence_penalty: 0``, ``logprobs: null``...); an unknown field is refused too.

Sampling maps to the mesh's integer task params: ``temperature`` to
``temperature_milli`` (OpenAI's default 1.0), ``top_p`` to ``top_p_milli``,
``max_tokens`` to ``max_tokens``, ``seed`` to ``seed`` (drawn by the gateway
when absent, and returned, because the mesh's sampling is seeded). ``stop`` is
honoured by cutting the text at the first stop sequence, which gives the same
text as stopping there: sampling is causal, so later tokens never change
earlier ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.gateway.errors import ApiError, bad_request, unsupported

VERIFY_MODES = ("signature", "audit", "redundant")  # mesh.core.messages.VERIFY_MODES
MAX_SEED = 2**63 - 1  # the mesh sampler's seed range (mesh.runtime.sampling)
MAX_TEMPERATURE = 2.0  # OpenAI's range
MAX_STOP_SEQUENCES = 4  # OpenAI's cap
MAX_STOP_CHARS = 256  # a stop sequence is a marker, not a document
MAX_EMBED_INPUTS = 2048  # OpenAI's cap; a model's own cap may be lower (see service)
MAX_MESSAGES = 256  # a conversation longer than this is over any zoo model's context
MAX_USER_CHARS = 256


@dataclass(frozen=True, slots=True)
class Sampling:
    """Generation settings, as the mesh takes them.

    Attributes:
        max_tokens: tokens to generate; None lets the gateway choose (see there).
        temperature_milli: temperature x 1000 (0 is greedy).
        top_p_milli: nucleus mass x 1000 (1000 is off).
        seed: the sampler's seed; None when the caller gave none.
        stop: sequences that end the text (not included in it).
    """

    max_tokens: int | None
    temperature_milli: int
    top_p_milli: int
    seed: int | None
    stop: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    """``POST /v1/embeddings``."""

    model: str
    texts: tuple[str, ...]
    base64: bool
    dimensions: int | None
    user: str | None
    verify: str | None


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """``POST /v1/completions``."""

    model: str
    prompt: str
    sampling: Sampling
    user: str | None
    verify: str | None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """``POST /v1/chat/completions``; messages are ``{"role", "content"[, "name"]}``."""

    model: str
    messages: tuple[dict[str, str], ...]
    sampling: Sampling
    user: str | None
    verify: str | None


class _Fields:
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


def parse_embeddings(body: Any) -> EmbeddingsRequest:
    """Check an embeddings request. Raises ApiError (400)."""
    fields = _Fields(body)
    model = _model(fields)
    raw = fields.get("input")
    if isinstance(raw, str):
        texts: tuple[str, ...] = (raw,)
    elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
        texts = tuple(raw)
    elif isinstance(raw, list) and raw:
        raise unsupported("input", "only text inputs are supported (no token arrays)")
    else:
        raise bad_request("input must be a string or a non-empty list of strings", param="input")
    if len(texts) > MAX_EMBED_INPUTS:
        raise bad_request(f"at most {MAX_EMBED_INPUTS} inputs per request", param="input")
    encoding = fields.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        raise bad_request("encoding_format must be float or base64", param="encoding_format")
    dimensions = fields.get("dimensions")
    if dimensions is not None and not _is_int(dimensions):
        raise bad_request("dimensions must be an integer", param="dimensions")
    request = EmbeddingsRequest(
        model=model,
        texts=texts,
        base64=encoding == "base64",
        dimensions=dimensions,
        user=_user(fields),
        verify=_mesh_extension(fields),
    )
    fields.finish()
    return request


def parse_completion(body: Any) -> CompletionRequest:
    """Check a completions request. Raises ApiError (400)."""
    fields = _Fields(body)
    _refuse_stream(fields)
    model = _model(fields)
    raw = fields.get("prompt")
    if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], str):
        raw = raw[0]
    if isinstance(raw, list):
        raise unsupported("prompt", "give one prompt as a string (no batches, no token arrays)")
    if not isinstance(raw, str):
        raise bad_request("prompt must be a string", param="prompt")
    sampling = _sampling(fields, max_tokens_names=("max_tokens",))
    fields.only_default("n", 1, why="the mesh returns one choice per request (n=1)")
    fields.only_default("best_of", 1, why="best_of is not supported (1 only)")
    fields.only_default("logprobs", why="log probabilities are not returned by the mesh")
    fields.only_default("echo", False, why="echo is not supported")
    fields.only_default("suffix", "", why="suffix (insertion) is not supported")
    _common_refusals(fields)
    request = CompletionRequest(
        model=model,
        prompt=raw,
        sampling=sampling,
        user=_user(fields),
        verify=_mesh_extension(fields),
    )
    fields.finish()
    return request


def parse_chat(body: Any) -> ChatRequest:
    """Check a chat completions request. Raises ApiError (400)."""
    fields = _Fields(body)
    _refuse_stream(fields)
    model = _model(fields)
    messages = _messages(fields.get("messages"))
    sampling = _sampling(fields, max_tokens_names=("max_tokens", "max_completion_tokens"))
    fields.only_default("n", 1, why="the mesh returns one choice per request (n=1)")
    fields.only_default("logprobs", False, why="log probabilities are not returned by the mesh")
    fields.only_default("top_logprobs", 0, why="log probabilities are not returned by the mesh")
    fields.only_default("tools", [], why="tool calls are not supported")
    fields.only_default("tool_choice", "none", why="tool calls are not supported")
    fields.only_default("parallel_tool_calls", False, why="tool calls are not supported")
    fields.only_default("functions", [], why="function calls are not supported")
    fields.only_default("function_call", "none", why="function calls are not supported")
    fields.only_default("response_format", {"type": "text"}, why="only text responses")
    _common_refusals(fields)
    request = ChatRequest(
        model=model,
        messages=messages,
        sampling=sampling,
        user=_user(fields),
        verify=_mesh_extension(fields),
    )
    fields.finish()
    return request


def choose_verify(header: str | None, body: str | None) -> str:
    """The verification mode from ``X-Mesh-Verify`` and the body's ``mesh.verify``.

    Raises:
        ApiError: 400 for an unknown mode, or a header and body that disagree.
    """
    if header is not None:
        header = header.strip()
        if header not in VERIFY_MODES:
            raise bad_request(
                f"X-Mesh-Verify must be one of {', '.join(VERIFY_MODES)}, not {header!r}",
                code="invalid_verify_mode",
            )
    if header is not None and body is not None and header != body:
        raise bad_request(
            f"X-Mesh-Verify ({header}) and mesh.verify ({body}) disagree",
            param="mesh.verify",
            code="invalid_verify_mode",
        )
    return header or body or "signature"


def _refuse_stream(fields: _Fields) -> None:
    # Checked first, so a streaming request always gets this code whatever else it holds.
    stream = fields.get("stream")
    if stream is True:
        raise ApiError(
            400,
            "streaming is not supported yet: the mesh protocol cannot stream results "
            "(send stream=false; every response carries its receipt)",
            param="stream",
            code="stream_unsupported",
        )
    if stream not in (None, False):
        raise bad_request("stream must be a boolean", param="stream")
    fields.only_default("stream_options", why="stream_options needs stream=true")


def _common_refusals(fields: _Fields) -> None:
    fields.only_default("presence_penalty", 0, 0.0, why="penalties are not supported (0 only)")
    fields.only_default("frequency_penalty", 0, 0.0, why="penalties are not supported (0 only)")
    fields.only_default("logit_bias", {}, why="logit_bias is not supported")


def _model(fields: _Fields) -> str:
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model must be a non-empty string", param="model")
    return model


def _user(fields: _Fields) -> str | None:
    # An end-user tag for the operator's logs; it never changes a result.
    user = fields.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise bad_request(f"user must be a string of at most {MAX_USER_CHARS} chars", param="user")
    return user


def _mesh_extension(fields: _Fields) -> str | None:
    """The body's ``mesh`` object (openai's ``extra_body``): only ``verify`` for now."""
    raw = fields.get("mesh")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise bad_request("mesh must be an object", param="mesh")
    unknown = sorted(set(raw) - {"verify"})
    if unknown:
        raise bad_request(f"unknown field mesh.{unknown[0]}", param=f"mesh.{unknown[0]}")
    verify = raw.get("verify")
    if verify is not None and verify not in VERIFY_MODES:
        raise bad_request(
            f"mesh.verify must be one of {', '.join(VERIFY_MODES)}",
            param="mesh.verify",
            code="invalid_verify_mode",
        )
    return verify


def _sampling(fields: _Fields, *, max_tokens_names: tuple[str, ...]) -> Sampling:
    max_tokens = None
    for name in max_tokens_names:
        value = fields.get(name)
        if value is None:
            continue
        if not _is_int(value) or value < 1:
            raise bad_request(f"{name} must be a positive integer", param=name)
        if max_tokens is not None and value != max_tokens:
            raise bad_request(f"{' and '.join(max_tokens_names)} disagree", param=name)
        max_tokens = value
    temperature = _number(fields, "temperature", default=1.0, low=0.0, high=MAX_TEMPERATURE)
    temperature_milli = round(temperature * 1000)
    if temperature > 0 and temperature_milli == 0:
        # Rounding it to 0 would turn sampling into greedy decoding: refuse instead.
        raise bad_request("temperature must be 0 or at least 0.001", param="temperature")
    top_p = _number(fields, "top_p", default=1.0, low=0.0, high=1.0)
    top_p_milli = round(top_p * 1000)
    if top_p_milli < 1:
        raise bad_request("top_p must be at least 0.001", param="top_p")
    seed = fields.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise bad_request(f"seed must be an integer in [0, {MAX_SEED}]", param="seed")
    return Sampling(
        max_tokens=max_tokens,
        temperature_milli=temperature_milli,
        top_p_milli=top_p_milli,
        seed=seed,
        stop=_stop(fields.get("stop")),
    )


def _number(fields: _Fields, name: str, *, default: float, low: float, high: float) -> float:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"{name} must be a number", param=name)
    if not low <= value <= high:
        raise bad_request(f"{name} must be in [{low}, {high}]", param=name)
    return float(value)


def _stop(raw: Any) -> tuple[str, ...]:
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


def _messages(raw: Any) -> tuple[dict[str, str], ...]:
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
