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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.core.messages import VERIFY_MODES
from mesh.gateway.errors import bad_request, unsupported
from mesh.gateway.fields import Fields, is_int, read_messages, read_number, read_stop

# The mesh sampler's seed range (mesh.runtime.sampling.MAX_SEED; that module imports torch).
MAX_SEED = 2**63 - 1
MAX_TEMPERATURE = 2.0  # OpenAI's range
MAX_EMBED_INPUTS = 2048  # OpenAI's cap; a model's own cap may be lower (see service)
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
class Streaming:
    """Whether and how to stream (``stream``, ``stream_options``).

    Attributes:
        enabled: answer with server-sent events as tokens come.
        include_usage: a last chunk carries the usage counts.
    """

    enabled: bool = False
    include_usage: bool = False


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """``POST /v1/completions``."""

    model: str
    prompt: str
    sampling: Sampling
    user: str | None
    verify: str | None
    streaming: Streaming = Streaming()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """``POST /v1/chat/completions``; messages are ``{"role", "content"[, "name"]}``."""

    model: str
    messages: tuple[dict[str, str], ...]
    sampling: Sampling
    user: str | None
    verify: str | None
    streaming: Streaming = Streaming()


def parse_embeddings(body: Any) -> EmbeddingsRequest:
    """Check an embeddings request. Raises ApiError (400)."""
    fields = Fields(body)
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
    if dimensions is not None and not is_int(dimensions):
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
    fields = Fields(body)
    streaming = _streaming(fields)
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
        streaming=streaming,
    )
    fields.finish()
    return request


def parse_chat(body: Any) -> ChatRequest:
    """Check a chat completions request. Raises ApiError (400)."""
    fields = Fields(body)
    streaming = _streaming(fields)
    model = _model(fields)
    messages = read_messages(fields.get("messages"))
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
        streaming=streaming,
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


def _streaming(fields: Fields) -> Streaming:
    """``stream`` and ``stream_options`` (``include_usage`` only; anything else is refused)."""
    stream = fields.get("stream")
    if stream is not None and type(stream) is not bool:  # 1 == True, but 1 is no boolean
        raise bad_request("stream must be a boolean", param="stream")
    options = fields.get("stream_options")
    if options is None:
        return Streaming(enabled=stream is True)
    if stream is not True:
        raise bad_request("stream_options needs stream=true", param="stream_options")
    if not isinstance(options, Mapping):
        raise bad_request("stream_options must be an object", param="stream_options")
    unknown = sorted(set(options) - {"include_usage"})
    if unknown:
        raise unsupported(f"stream_options.{unknown[0]}", "only include_usage is supported")
    usage = options.get("include_usage")
    if usage is not None and type(usage) is not bool:
        raise bad_request(
            "stream_options.include_usage must be a boolean", param="stream_options.include_usage"
        )
    return Streaming(enabled=True, include_usage=usage is True)


def _common_refusals(fields: Fields) -> None:
    fields.only_default("presence_penalty", 0, 0.0, why="penalties are not supported (0 only)")
    fields.only_default("frequency_penalty", 0, 0.0, why="penalties are not supported (0 only)")
    fields.only_default("logit_bias", {}, why="logit_bias is not supported")


def _model(fields: Fields) -> str:
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model must be a non-empty string", param="model")
    return model


def _user(fields: Fields) -> str | None:
    # OpenAI's end-user tag: it goes to the request log, and never changes a result.
    user = fields.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise bad_request(f"user must be a string of at most {MAX_USER_CHARS} chars", param="user")
    return user


def _mesh_extension(fields: Fields) -> str | None:
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


def _sampling(fields: Fields, *, max_tokens_names: tuple[str, ...]) -> Sampling:
    max_tokens = None
    for name in max_tokens_names:
        value = fields.get(name)
        if value is None:
            continue
        if not is_int(value) or value < 1:
            raise bad_request(f"{name} must be a positive integer", param=name)
        if max_tokens is not None and value != max_tokens:
            raise bad_request(f"{' and '.join(max_tokens_names)} disagree", param=name)
        max_tokens = value
    temperature = read_number(fields, "temperature", default=1.0, low=0.0, high=MAX_TEMPERATURE)
    temperature_milli = round(temperature * 1000)
    if temperature > 0 and temperature_milli == 0:
        # Rounding it to 0 would turn sampling into greedy decoding: refuse instead.
        raise bad_request("temperature must be 0 or at least 0.001", param="temperature")
    top_p = read_number(fields, "top_p", default=1.0, low=0.0, high=1.0)
    top_p_milli = round(top_p * 1000)
    if top_p_milli < 1:
        raise bad_request("top_p must be at least 0.001", param="top_p")
    seed = fields.get("seed")
    if seed is not None and (not is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise bad_request(f"seed must be an integer in [0, {MAX_SEED}]", param="seed")
    return Sampling(
        max_tokens=max_tokens,
        temperature_milli=temperature_milli,
        top_p_milli=top_p_milli,
        seed=seed,
        stop=read_stop(fields.get("stop")),
    )
