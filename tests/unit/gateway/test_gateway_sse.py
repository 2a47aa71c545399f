"""The SSE encoder writes what OpenAI's streaming clients parse."""

from __future__ import annotations

import json

import pytest

from mesh.gateway.sse import DONE, chat_chunk, completion_chunk, encode_event

pytestmark = pytest.mark.unit


def _parse(stream: bytes) -> list[dict[str, str]]:
    """A minimal reader of the SSE format (the WHATWG rules the clients follow)."""
    events = []
    for block in stream.decode().split("\n\n"):
        if not block:
            continue
        event: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            event[name] = f"{event[name]}\n{value}" if name in event else value
        events.append(event)
    return events


def test_json_data_event() -> None:
    data = encode_event({"a": 1, "b": "é"})
    assert data == b'data: {"a":1,"b":"\\u00e9"}\n\n'
    assert json.loads(_parse(data)[0]["data"]) == {"a": 1, "b": "é"}


def test_multiline_strings_become_several_data_lines() -> None:
    data = encode_event("one\ntwo\r\nthree", event="note", id="7")
    assert data == b"event: note\nid: 7\ndata: one\ndata: two\ndata: three\n\n"
    assert _parse(data) == [{"event": "note", "id": "7", "data": "one\ntwo\nthree"}]


def test_fields_cannot_hold_line_breaks() -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_event("x", event="a\nb")


def test_a_chat_stream_reads_back_as_openai_chunks() -> None:
    stream = b"".join(
        [
            encode_event(chat_chunk(id="c1", model="m", created=5, role="assistant")),
            encode_event(chat_chunk(id="c1", model="m", created=5, content="Hel")),
            encode_event(chat_chunk(id="c1", model="m", created=5, content="lo\n")),
            encode_event(
                chat_chunk(
                    id="c1", model="m", created=5, finish_reason="stop", extra={"mesh": {"x": 1}}
                )
            ),
            DONE,
        ]
    )
    events = _parse(stream)
    assert events[-1] == {"data": "[DONE]"}
    chunks = [json.loads(e["data"]) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "c1" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Hello\n"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["mesh"] == {"x": 1}


def test_completion_chunk_shape() -> None:
    chunk = completion_chunk(id="x", model="m", created=1, text="hi", finish_reason="length")
    assert chunk["object"] == "text_completion"
    assert chunk["choices"] == [
        {"index": 0, "text": "hi", "logprobs": None, "finish_reason": "length"}
    ]
