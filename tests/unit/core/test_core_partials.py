"""Streaming on the wire: the request's stream flag, Partial messages, and the stream rules."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import pytest
from core_samples import sample_inputs, signed_task
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.core import canonical
from mesh.core.messages import (
    Partial,
    decode_partial,
    decode_request,
    encode_request,
)
from mesh.core.partials import (
    AnswerStream,
    Piece,
    StreamCursor,
    runtime_class,
    token_list,
    token_tensor,
)
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import (
    MalformedMessage,
    MeshError,
    OtherRuntimeClass,
    StreamDiverged,
    TooLarge,
    VerificationError,
)

pytestmark = pytest.mark.unit

TASK_ID = bytes(range(32))
RUNTIME = {"device": "cpu", "dtype": "float32", "torch": "2.13.0", "batch_invariant": True}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def partial(seq: int, ids: list[int], text: str, runtime: dict[str, Any] | None = None) -> Partial:
    return Partial(
        task_id=TASK_ID,
        seq=seq,
        runtime=(RUNTIME if seq == 0 else {}) if runtime is None else runtime,
        outputs={"text": [text], "token_ids": token_tensor(ids)},
    )


def final(ids: list[int], text: str) -> Values:
    return {"text": [text], "token_ids": token_tensor(ids)}


# -- the request's stream flag ---------------------------------------------------------
def test_a_request_without_stream_keeps_its_bytes_and_says_no() -> None:
    plain = encode_request(signed_task(), sample_inputs())
    assert b"stream" not in plain
    assert plain == encode_request(signed_task(), sample_inputs(), stream=False)
    assert decode_request(plain).stream is False


def test_a_streamed_request_round_trips() -> None:
    data = encode_request(signed_task(), sample_inputs(), stream=True)
    request = decode_request(data)
    assert request.stream is True
    assert request.task.digest == signed_task().digest  # the same signed task


@pytest.mark.parametrize("value", [False, 1, "yes", None])
def test_stream_is_true_or_absent(value: Any) -> None:
    wire = canonical.decode(encode_request(signed_task(), sample_inputs()))
    wire["stream"] = value
    with pytest.raises(MalformedMessage, match="stream"):
        decode_request(canonical.encode(wire))


def test_a_request_with_another_extra_field_is_refused() -> None:
    wire = canonical.decode(encode_request(signed_task(), sample_inputs(), stream=True))
    wire["streams"] = True
    with pytest.raises(MalformedMessage):
        decode_request(canonical.encode(wire))


# -- Partial messages -------------------------------------------------------------------
def test_partial_round_trip_in_the_documented_shape() -> None:
    message = partial(0, [5, 6, 7], "héllo")
    data = message.encode()
    assert decode_partial(data) == message
    wire = canonical.decode(data)
    assert set(wire) == {"kind", "outputs", "runtime", "seq", "task_id"}
    assert wire["kind"] == "partial"
    assert wire["outputs"]["text"] == ["héllo"]
    assert wire["outputs"]["token_ids"]["dtype"] == "int64"
    assert token_list(Tensor.from_wire(wire["outputs"]["token_ids"])) == [5, 6, 7]


EMPTY_IDS = {"data": b"", "dtype": "int64", "shape": [0]}


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "result"},
        {"seq": -1},
        {"seq": True},
        {"task_id": b"short"},
        {"outputs": {"text": ["x"]}},
        {"outputs": {"text": ["x"], "token_ids": EMPTY_IDS, "extra": ["y"]}},
        {"outputs": {"text": ["x", "y"], "token_ids": EMPTY_IDS}},
        {"outputs": {"text": "x", "token_ids": EMPTY_IDS}},
        {"outputs": {"text": [1], "token_ids": EMPTY_IDS}},
        {"outputs": {"text": ["x"], "token_ids": {**EMPTY_IDS, "dtype": "int32"}}},
        {"outputs": {"text": ["x"], "token_ids": {**EMPTY_IDS, "shape": [0, 0]}}},
        {"outputs": {"text": ["x"], "token_ids": ["1"]}},
        {"runtime": {"device": 1.5}},
    ],
)
def test_malformed_partials_are_refused(change: dict[str, Any]) -> None:
    wire = canonical.decode(partial(0, [1], "a").encode())
    wire.update(change)
    with pytest.raises(MalformedMessage):
        decode_partial(canonical.encode(wire))


def test_unknown_and_missing_partial_fields_are_refused() -> None:
    wire = canonical.decode(partial(0, [1], "a").encode())
    with pytest.raises(MalformedMessage, match="unknown"):
        decode_partial(canonical.encode({**wire, "receipt": b""}))
    del wire["seq"]
    with pytest.raises(MalformedMessage, match="missing"):
        decode_partial(canonical.encode(wire))


def test_a_partial_text_over_the_string_cap_is_too_large() -> None:
    with pytest.raises(TooLarge):
        partial(0, [1], "x" * (64 * 1024 + 1))


# -- one answer's rules -----------------------------------------------------------------
def test_an_answer_adds_up_and_its_final_result_checks() -> None:
    answer = AnswerStream(TASK_ID)
    assert answer.add(partial(0, [1, 2], "ab")) == Piece((1, 2), "ab")
    assert answer.add(partial(1, [], "c")) == Piece((), "c")
    assert answer.add(partial(2, [3], "")) == Piece((3,), "")
    assert answer.runtime == RUNTIME
    answer.check_final(final([1, 2, 3], "abc"), {**RUNTIME, "batch_size": 7})


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (Partial(task_id=bytes(32), seq=0, runtime=RUNTIME, outputs=final([1], "a")), "task"),
        (partial(1, [1], "a"), "out of order|due"),
        (partial(0, [1], "a", runtime={}), "names no runtime"),
    ],
)
def test_a_first_partial_out_of_the_rules_is_refused(message: Partial, why: str) -> None:
    with pytest.raises(VerificationError, match=why):
        AnswerStream(TASK_ID).add(message)


def test_only_the_first_partial_names_the_runtime_class() -> None:
    answer = AnswerStream(TASK_ID)
    answer.add(partial(0, [1], "a"))
    with pytest.raises(VerificationError, match="only the first"):
        answer.add(partial(1, [2], "b", runtime=RUNTIME))


@pytest.mark.parametrize(
    ("outputs", "runtime", "why"),
    [
        (final([1, 2, 4], "abc"), RUNTIME, "token ids"),
        (final([1, 2], "ab"), RUNTIME, "token ids"),
        (final([1, 2, 3], "abd"), RUNTIME, "text"),
        (final([1, 2, 3], "abc"), {**RUNTIME, "dtype": "bfloat16"}, "runtime class"),
        ({"text": ["abc"]}, RUNTIME, "token_ids"),
        ({"token_ids": token_tensor([1, 2, 3])}, RUNTIME, "one text"),
    ],
)
def test_a_final_result_that_is_not_the_streamed_one_is_a_lie(
    outputs: Values, runtime: dict[str, Any], why: str
) -> None:
    answer = AnswerStream(TASK_ID)
    answer.add(partial(0, [1, 2, 3], "abc"))
    with pytest.raises(VerificationError, match=why):
        answer.check_final(outputs, runtime)


def test_runtime_class_is_the_named_keys_only() -> None:
    # batch_size is per run, price_micro (the node's price) is no part of the computation.
    assert runtime_class({**RUNTIME, "batch_size": 3, "price_micro": 5}) == RUNTIME


# -- across answers: the cursor ------------------------------------------------------------
def _feed(cursor: StreamCursor, answer: AnswerStream, message: Partial) -> Piece:
    piece = answer.add(message)
    if answer.count == 1:
        cursor.admit(answer)
    return cursor.advance(answer, piece)


def test_a_continuation_gives_only_what_extends_the_given_tokens() -> None:
    cursor = StreamCursor()
    first = AnswerStream(TASK_ID)
    assert _feed(cursor, first, partial(0, [1, 2], "ab")) == Piece((1, 2), "ab")
    again = AnswerStream(TASK_ID)  # the first worker died: same task elsewhere
    assert _feed(cursor, again, partial(0, [1], "a")) == Piece((), "")
    assert _feed(cursor, again, partial(1, [2, 3], "bc")) == Piece((3,), "c")
    assert _feed(cursor, again, partial(2, [4], "d")) == Piece((4,), "d")
    again.check_final(final([1, 2, 3, 4], "abcd"), RUNTIME)
    cursor.check_complete(again)
    assert cursor.token_ids == [1, 2, 3, 4] and cursor.text == "abcd"


def test_a_continuation_of_another_runtime_class_is_refused() -> None:
    cursor = StreamCursor()
    _feed(cursor, AnswerStream(TASK_ID), partial(0, [1], "a"))
    other = AnswerStream(TASK_ID)
    with pytest.raises(OtherRuntimeClass):
        _feed(cursor, other, partial(0, [1], "a", runtime={**RUNTIME, "device": "gpu"}))


@pytest.mark.parametrize(
    ("given", "again"),
    [
        (([1, 2], "ab"), ([1, 5], "ab")),  # a token differs
        (([1, 2], "ab"), ([1, 2], "aX")),  # the text differs
    ],
)
def test_a_continuation_that_differs_diverges(
    given: tuple[list[int], str], again: tuple[list[int], str]
) -> None:
    cursor = StreamCursor()
    _feed(cursor, AnswerStream(TASK_ID), partial(0, *given))
    with pytest.raises(StreamDiverged):
        _feed(cursor, AnswerStream(TASK_ID), partial(0, *again))


def test_a_continuation_shorter_than_what_was_given_diverges_at_the_end() -> None:
    cursor = StreamCursor()
    _feed(cursor, AnswerStream(TASK_ID), partial(0, [1, 2, 3], "abc"))
    again = AnswerStream(TASK_ID)
    _feed(cursor, again, partial(0, [1, 2], "ab"))
    again.check_final(final([1, 2], "ab"), RUNTIME)
    with pytest.raises(StreamDiverged):
        cursor.check_complete(again)


@st.composite
def split(draw: st.DrawFn, tokens: list[int]) -> list[list[int]]:
    """``tokens`` cut into consecutive pieces (some empty)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(tokens)), max_size=6)))
    bounds = [0, *cuts, len(tokens)]
    return [tokens[a:b] for a, b in itertools.pairwise(bounds)]


@FUZZ
@given(data=st.data(), tokens=st.lists(st.integers(0, 25), min_size=1, max_size=40))
def test_any_continuation_gives_every_token_exactly_once(
    data: st.DataObject, tokens: list[int]
) -> None:
    """However answers split their partials, and wherever the first one broke off."""
    text = "".join(chr(97 + t) for t in tokens)
    cursor = StreamCursor()
    given_ids: list[int] = []
    given_text = ""
    broke_at = data.draw(st.integers(0, len(tokens)))
    for attempt_tokens in (tokens[:broke_at], tokens):
        answer = AnswerStream(TASK_ID)
        for seq, piece_ids in enumerate(data.draw(split(attempt_tokens))):
            piece_text = "".join(chr(97 + t) for t in piece_ids)
            fresh = _feed(cursor, answer, partial(seq, piece_ids, piece_text))
            given_ids += fresh.token_ids
            given_text += fresh.text
    answer.check_final(final(tokens, text), RUNTIME)
    cursor.check_complete(answer)
    assert given_ids == tokens and given_text == text


@FUZZ
@given(data=st.binary(max_size=300))
def test_partial_decoder_raises_only_typed_errors_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(MeshError):
        decode_partial(data)


@FUZZ
@given(position=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_partial_decoder_raises_only_typed_errors_on_mutations(position: int, byte: int) -> None:
    valid = bytearray(partial(0, [1, 2, 3], "héllo").encode())
    valid[position % len(valid)] = byte
    with contextlib.suppress(MeshError):
        decode_partial(bytes(valid))


@FUZZ
@given(
    outputs=st.dictionaries(
        st.sampled_from(["text", "token_ids", "x"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=5),
            st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3),
            st.fixed_dictionaries(
                {
                    "data": st.binary(max_size=24),
                    "dtype": st.sampled_from(["int64", "int8", "float32", "nope"]),
                    "shape": st.lists(st.integers(-1, 4), max_size=3),
                }
            ),
        ),
        max_size=3,
    ),
    seq=st.one_of(st.integers(-2, 3), st.booleans(), st.none()),
)
def test_partials_built_from_random_structures_raise_only_typed_errors(
    outputs: dict[str, Any], seq: Any
) -> None:
    wire = {"kind": "partial", "outputs": outputs, "runtime": {}, "seq": seq, "task_id": TASK_ID}
    with contextlib.suppress(MeshError):
        Partial.from_wire(wire)
