"""Response bodies from mesh outputs: stop sequences, finish reasons, vectors, receipts."""

from __future__ import annotations

import base64
import struct

import pytest

from mesh.client.jsonvalues import tensor_from_nested
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.gateway.errors import ApiError
from mesh.gateway.responses import (
    chat_completion,
    completion,
    embedding_list,
    read_embeddings,
    read_generation,
)

pytestmark = pytest.mark.unit

EOS = 256


def _outputs(text: str, ids: list[int]) -> Values:
    return {"text": [text], "token_ids": tensor_from_nested(ids, dtype="int64")}


def test_stop_sequences_cut_the_text_at_the_earliest() -> None:
    out = _outputs("one. two! three", list(range(15)))
    gen = read_generation(out, eos_id=EOS, max_tokens=15, stop=["!", "."])
    assert (gen.text, gen.finish_reason) == ("one", "stop")
    assert gen.token_ids == list(range(15))  # the tokens the worker ran and its receipt covers


def test_finish_reasons() -> None:
    assert (
        read_generation(
            _outputs("abc", [97, 98, 99]), eos_id=EOS, max_tokens=3, stop=[]
        ).finish_reason
        == "length"
    )
    assert (
        read_generation(
            _outputs("ab", [97, 98, EOS]), eos_id=EOS, max_tokens=8, stop=[]
        ).finish_reason
        == "stop"
    )
    no_match = read_generation(_outputs("abc", [97, 98, 99]), eos_id=EOS, max_tokens=3, stop=["z"])
    assert (no_match.text, no_match.finish_reason) == ("abc", "length")


@pytest.mark.parametrize(
    "outputs",
    [
        {},
        {"text": ["a", "b"], "token_ids": tensor_from_nested([1], dtype="int64")},
        {"text": ["a"], "token_ids": tensor_from_nested([1.0])},
        {"text": ["a"], "token_ids": tensor_from_nested([[1]], dtype="int64")},
    ],
)
def test_outputs_off_schema_are_the_workers_fault(outputs: Values) -> None:
    with pytest.raises(ApiError) as caught:
        read_generation(outputs, eos_id=EOS, max_tokens=4, stop=[])
    assert (caught.value.status, caught.value.code) == (502, "bad_worker_output")


def test_embeddings_as_floats_and_base64() -> None:
    rows = [[0.5, -0.25, 1.0], [0.1, 0.2, 0.3]]
    out = {"embeddings": tensor_from_nested(rows)}
    vectors = read_embeddings(out, name="embeddings", rows=2)
    body = embedding_list(vectors, model="m", as_base64=False, prompt_tokens=7)
    assert body["object"] == "list" and body["model"] == "m"
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["data"][0]["embedding"] == [0.5, -0.25, 1.0]
    encoded = embedding_list(vectors, model="m", as_base64=True, prompt_tokens=7)
    raw = base64.b64decode(encoded["data"][1]["embedding"])
    assert list(struct.unpack("<3f", raw)) == vectors[1]  # little-endian float32, as OpenAI
    with pytest.raises(ApiError):
        read_embeddings(out, name="embeddings", rows=3)
    with pytest.raises(ApiError):
        read_embeddings(
            {"embeddings": tensor_from_nested([[float("nan")]])}, name="embeddings", rows=1
        )
    with pytest.raises(ApiError):
        read_embeddings(
            {"embeddings": Tensor("int64", (1, 1), bytes(8))}, name="embeddings", rows=1
        )


def test_completion_bodies() -> None:
    gen = read_generation(_outputs("hi", [104, 105]), eos_id=EOS, max_tokens=2, stop=[])
    text = completion(gen, id="ab", model="m", created=9, prompt_tokens=3)
    assert text["id"] == "cmpl-ab" and text["object"] == "text_completion"
    assert text["choices"][0] == {
        "index": 0,
        "text": "hi",
        "logprobs": None,
        "finish_reason": "length",
    }
    assert text["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    chat = chat_completion(gen, id="ab", model="m", created=9, prompt_tokens=3)
    assert chat["id"] == "chatcmpl-ab" and chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
