"""Request bodies: OpenAI's shapes read into mesh params; what cannot be honoured is refused."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.gateway.errors import ApiError
from mesh.gateway.schemas import (
    MAX_SEED,
    Streaming,
    choose_verify,
    parse_chat,
    parse_completion,
    parse_embeddings,
)

pytestmark = pytest.mark.unit

USER = [{"role": "user", "content": "hi"}]


def _refused(parse: Any, body: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(body)
    assert caught.value.status == 400
    return caught.value


def test_completion_maps_openai_params_to_integer_task_params() -> None:
    request = parse_completion(
        {
            "model": "tiny-gpt",
            "prompt": "hello",
            "max_tokens": 7,
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": 5,
            "stop": ["\n", "END"],
            "n": 1,
            "logprobs": None,
            "presence_penalty": 0,
            "stream": False,
            "user": "u-1",
            "mesh": {"verify": "audit"},
        }
    )
    s = request.sampling
    assert (s.max_tokens, s.temperature_milli, s.top_p_milli, s.seed) == (7, 700, 900, 5)
    assert s.stop == ("\n", "END")
    assert (request.model, request.prompt, request.user, request.verify) == (
        "tiny-gpt",
        "hello",
        "u-1",
        "audit",
    )


def test_completion_defaults_are_openai_defaults() -> None:
    request = parse_completion({"model": "m", "prompt": ["one prompt"]})
    s = request.sampling
    assert request.prompt == "one prompt"
    assert (s.max_tokens, s.temperature_milli, s.top_p_milli, s.seed, s.stop) == (
        None,
        1000,
        1000,
        None,
        (),
    )
    assert (
        parse_completion({"model": "m", "prompt": "x", "temperature": 0}).sampling.temperature_milli
        == 0
    )
    assert parse_completion({"model": "m", "prompt": "x", "stop": "."}).sampling.stop == (".",)


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"n": 2}, "n", "unsupported_parameter"),
        ({"logprobs": 3}, "logprobs", "unsupported_parameter"),
        ({"echo": True}, "echo", "unsupported_parameter"),
        ({"best_of": 3}, "best_of", "unsupported_parameter"),
        ({"suffix": "x"}, "suffix", "unsupported_parameter"),
        ({"presence_penalty": 0.5}, "presence_penalty", "unsupported_parameter"),
        ({"logit_bias": {"50256": -100}}, "logit_bias", "unsupported_parameter"),
        ({"frobnicate": 1}, "frobnicate", "unknown_parameter"),
        ({"temperature": 2.5}, "temperature", "invalid_value"),
        ({"temperature": 0.0001}, "temperature", "invalid_value"),  # would round to greedy
        ({"temperature": "hot"}, "temperature", "invalid_value"),
        ({"top_p": 0}, "top_p", "invalid_value"),
        ({"top_p": 1.5}, "top_p", "invalid_value"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"max_tokens": 2.5}, "max_tokens", "invalid_value"),
        ({"max_tokens": True}, "max_tokens", "invalid_value"),
        ({"seed": -1}, "seed", "invalid_value"),
        ({"seed": MAX_SEED + 1}, "seed", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"stop": [""]}, "stop", "invalid_value"),
        ({"prompt": ["a", "b"]}, "prompt", "unsupported_parameter"),
        ({"prompt": [1, 2, 3]}, "prompt", "unsupported_parameter"),
        ({"prompt": None}, "prompt", "invalid_value"),
        ({"model": ""}, "model", "invalid_value"),
        ({"mesh": {"verify": "trust-me"}}, "mesh.verify", "invalid_verify_mode"),
        ({"mesh": {"colour": "red"}}, "mesh.colour", "invalid_value"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
        ({"stream": "yes"}, "stream", "invalid_value"),
        ({"stream": 1}, "stream", "invalid_value"),
        ({"stream": True, "stream_options": []}, "stream_options", "invalid_value"),
        (
            {"stream": True, "stream_options": {"include_obfuscation": True}},
            "stream_options.include_obfuscation",
            "unsupported_parameter",
        ),
        (
            {"stream": True, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
            "invalid_value",
        ),
    ],
)
def test_completion_refuses_what_it_cannot_honour(
    change: dict[str, Any], param: str, code: str
) -> None:
    error = _refused(parse_completion, {"model": "m", "prompt": "x", **change})
    assert (error.param, error.code) == (param, code)
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_stream_and_its_usage_option_are_read() -> None:
    assert parse_completion({"model": "m", "prompt": "x"}).streaming == Streaming(False, False)
    assert parse_completion({"model": "m", "prompt": "x", "stream": True}).streaming == Streaming(
        True, False
    )
    chat = parse_chat(
        {
            "model": "m",
            "messages": USER,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert chat.streaming == Streaming(enabled=True, include_usage=True)
    # stream=true does not lift any other refusal.
    error = _refused(parse_chat, {"model": "m", "messages": USER, "stream": True, "n": 3})
    assert error.param == "n"


def test_body_must_be_an_object() -> None:
    for body in ([], "x", None, 3):
        _refused(parse_completion, body)


def test_chat_reads_messages_and_both_max_tokens_names() -> None:
    request = parse_chat(
        {
            "model": "tiny-gpt",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "name": "ann",
                },
                {"role": "assistant", "content": "ok", "tool_calls": None},
            ],
            "max_completion_tokens": 9,
            "tools": [],
            "tool_choice": "none",
            "response_format": {"type": "text"},
            "logprobs": False,
        }
    )
    assert request.messages == (
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a\nb", "name": "ann"},
        {"role": "assistant", "content": "ok"},
    )
    assert request.sampling.max_tokens == 9
    same = parse_chat({"model": "m", "messages": USER, "max_tokens": 4, "max_completion_tokens": 4})
    assert same.sampling.max_tokens == 4


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        (
            {"messages": [{"role": "user", "content": "x", "tool_calls": [{}]}]},
            "messages[0].tool_calls",
        ),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 3}, "n"),
        ({"max_tokens": 4, "max_completion_tokens": 5}, "max_completion_tokens"),
    ],
)
def test_chat_refusals(change: dict[str, Any], param: str) -> None:
    error = _refused(parse_chat, {"model": "m", "messages": USER, **change})
    assert error.param == param


def test_embeddings_input_forms() -> None:
    one = parse_embeddings({"model": "minilm-l6", "input": "a"})
    assert (one.texts, one.base64, one.dimensions, one.verify) == (("a",), False, None, None)
    many = parse_embeddings(
        {"model": "m", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 384}
    )
    assert (many.texts, many.base64, many.dimensions) == (("a", "b"), True, 384)
    for bad in ([], [1, 2], [[1, 2]], None, 5):
        _refused(parse_embeddings, {"model": "m", "input": bad})
    _refused(parse_embeddings, {"model": "m", "input": "a", "encoding_format": "int8"})
    _refused(parse_embeddings, {"model": "m", "input": ["a"] * 2049})


def test_verify_mode_from_header_or_body() -> None:
    assert choose_verify(None, None) == "signature"
    assert choose_verify("audit", None) == "audit"
    assert choose_verify(" redundant ", None) == "redundant"
    assert choose_verify(None, "audit") == "audit"
    assert choose_verify("audit", "audit") == "audit"
    for header, body in (("paranoid", None), ("audit", "signature")):
        with pytest.raises(ApiError) as caught:
            choose_verify(header, body)
        assert (caught.value.status, caught.value.code) == (400, "invalid_verify_mode")


def test_seed_range_is_the_samplers() -> None:
    from mesh.runtime import sampling

    assert sampling.MAX_SEED == MAX_SEED


def test_the_gateways_copies_of_runtime_defaults_match() -> None:
    # The gateway cannot import these modules (they import torch): it keeps copies.
    from mesh.gateway import service
    from mesh.runtime import embed, generate

    assert service.DEFAULT_MAX_TOKENS == generate.DEFAULT_MAX_TOKENS
    assert service.DEFAULT_MAX_PROMPT_TOKENS == generate.DEFAULT_MAX_PROMPT_TOKENS
    assert service.DEFAULT_MAX_TEXTS == embed.DEFAULT_MAX_TEXTS
