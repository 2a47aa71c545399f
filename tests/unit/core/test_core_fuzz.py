"""Property-based fuzzing: hostile bytes give a typed error, never another exception.

Every decoder of the core is fed random bytes, mutations of valid encodings and
random decoded structures; the frame reader is fed arbitrary splits and garbage.
Anything raised must be a :class:`~mesh.errors.MeshError`; the frame reader's
buffer must stay within its caps. Hangs are caught by the suite's timeout.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from core_samples import (
    AUDITOR,
    WORKER,
    sample_capacity,
    sample_inputs,
    sample_outputs,
    sample_verdict,
    signed_receipt,
    signed_task,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.core import canonical
from mesh.core.envelope import open_signed, sign_message
from mesh.core.framing import HEADER_BYTES, FrameReader, Message, encode_frames
from mesh.core.messages import (
    CapacityRecord,
    ErrorReply,
    Partial,
    Receipt,
    Task,
    Verdict,
    decode_partial,
    decode_request,
    decode_response,
    encode_request,
    encode_result,
)
from mesh.core.partials import token_tensor
from mesh.core.values import decode_values, encode_values, values_from_wire
from mesh.errors import MeshError

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID: dict[str, bytes] = {
    "task": signed_task().envelope,
    "receipt": signed_receipt().envelope,
    "capacity": sign_message(WORKER, sample_capacity()).envelope,
    "verdict": sign_message(AUDITOR, sample_verdict()).envelope,
    "request": encode_request(signed_task(), sample_inputs()),
    "streamed-request": encode_request(signed_task(), sample_inputs(), stream=True),
    "partial": Partial(
        task_id=bytes(32),
        seq=0,
        runtime={"device": "cpu"},
        outputs={"text": ["hé"], "token_ids": token_tensor([1, 2])},
    ).encode(),
    "result": encode_result(signed_receipt(), sample_outputs()),
    "error": ErrorReply(code="busy", message="x", retry_after_ms=5, task_id=b"").encode(),
    "values": encode_values(sample_inputs()),
}

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "canonical": canonical.decode,
    "task": lambda b: open_signed(b, Task),
    "receipt": lambda b: open_signed(b, Receipt),
    "capacity": lambda b: open_signed(b, CapacityRecord),
    "verdict": lambda b: open_signed(b, Verdict),
    "request": decode_request,
    "partial": decode_partial,
    "response": decode_response,
    "values": decode_values,
}


def _only_typed_errors(decoder: Callable[[bytes], Any], data: bytes) -> None:
    with contextlib.suppress(MeshError):
        decoder(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid encoding with a few bytes flipped, inserted, deleted or cut."""
    data = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(
                st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCA, 0xCB, 0xDC, 0xDF, 0xFF])
            )
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


# Decoded-structure values of the kinds msgpack can produce (floats included).
wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**65)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes(name: str, data: bytes) -> None:
    _only_typed_errors(DECODERS[name], data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@FUZZ
@given(data=mutated())
def test_mutated_valid_encodings(name: str, data: bytes) -> None:
    _only_typed_errors(DECODERS[name], data)


@FUZZ
@given(value=wire_values)
def test_canonical_decode_of_any_encoding(value: Any) -> None:
    import msgpack

    try:
        data = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return
    _only_typed_errors(canonical.decode, data)


@pytest.mark.parametrize("cls", [Task, Receipt, CapacityRecord, Verdict, ErrorReply])
@FUZZ
@given(value=wire_values, base=st.booleans(), key=st.text(max_size=16))
def test_from_wire_of_random_structures(cls: Any, value: Any, base: bool, key: str) -> None:
    if base:
        # Start from a valid wire map and replace one field, to reach deeper checks.
        valid = {
            Task: signed_task().message,
            Receipt: signed_receipt().message,
            CapacityRecord: sample_capacity(),
            Verdict: sample_verdict(),
            ErrorReply: ErrorReply(code="busy", message="", retry_after_ms=0, task_id=b""),
        }[cls].to_wire()
        field = key if key in valid else sorted(valid)[len(key) % len(valid)]
        value = valid | {field: value}
    with contextlib.suppress(MeshError):
        cls.from_wire(value)


@FUZZ
@given(value=wire_values)
def test_values_from_random_structures(value: Any) -> None:
    with contextlib.suppress(MeshError):
        values_from_wire(value)


@FUZZ
@given(value=wire_values)
def test_open_signed_of_random_structures(value: Any) -> None:
    with contextlib.suppress(MeshError):
        open_signed(value if isinstance(value, dict) else {"body": value}, Task)


MAX_FRAME = 64
MAX_MESSAGE = 256


@FUZZ
@given(
    messages=st.lists(
        st.tuples(st.binary(max_size=MAX_MESSAGE), st.booleans()), min_size=1, max_size=5
    ),
    cuts=st.lists(st.integers(0, 5000), max_size=20),
)
def test_frame_reader_any_split_gives_the_messages(
    messages: list[tuple[bytes, bool]], cuts: list[int]
) -> None:
    stream = b"".join(encode_frames(m, max_frame=MAX_FRAME, partial=p) for m, p in messages)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    reader = FrameReader(max_frame=MAX_FRAME, max_message=MAX_MESSAGE)
    received: list[Message] = []
    for start, end in itertools.pairwise(points):
        received.extend(reader.feed(stream[start:end]))
        assert reader.buffered <= HEADER_BYTES + MAX_FRAME + MAX_MESSAGE
    assert [(m.data, m.partial) for m in received] == messages
    assert reader.idle


@FUZZ
@given(chunks=st.lists(st.binary(max_size=300), max_size=12))
def test_frame_reader_garbage_is_typed_and_bounded(chunks: list[bytes]) -> None:
    reader = FrameReader(max_frame=MAX_FRAME, max_message=MAX_MESSAGE)
    for chunk in chunks:
        try:
            for message in reader.feed(chunk):
                assert len(message.data) <= MAX_MESSAGE
        except MeshError:
            return
        assert reader.buffered <= HEADER_BYTES + MAX_FRAME + MAX_MESSAGE


@FUZZ
@given(data=mutated(), split=st.integers(0, 2000))
def test_frame_reader_on_mutated_frames(data: bytes, split: int) -> None:
    framed = bytearray(encode_frames(data, max_frame=MAX_FRAME))
    framed[split % len(framed)] ^= 0xFF
    reader = FrameReader(max_frame=MAX_FRAME, max_message=4096)
    try:
        for message in reader.feed(bytes(framed)):
            _only_typed_errors(decode_response, message.data)
    except MeshError:
        pass
    assert reader.buffered <= HEADER_BYTES + MAX_FRAME + 4096


canonical_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


@FUZZ
@given(value=canonical_values)
def test_canonical_round_trip_and_uniqueness(value: Any) -> None:
    import msgpack

    data = canonical.encode(value)
    assert canonical.decode(data) == value
    # Any other msgpack encoding of the same value (here: insertion-ordered maps)
    # is either byte-identical or rejected.
    other = msgpack.packb(value, use_bin_type=True)
    if other != data:
        with pytest.raises(MeshError):
            canonical.decode(other)
