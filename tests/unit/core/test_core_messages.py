"""Messages: schema checks on construction and decoding, request/response, error replies."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from core_samples import (
    CLIENT,
    sample_capacity,
    sample_inputs,
    sample_outputs,
    sample_receipt,
    sample_task,
    sample_verdict,
    signed_receipt,
    signed_task,
)

from mesh.core import canonical
from mesh.core.messages import (
    MAX_COMMITMENT_BYTES,
    MAX_PARAMS,
    CapacityRecord,
    ErrorReply,
    Receipt,
    Result,
    Task,
    Verdict,
    decode_request,
    decode_response,
    encode_request,
    encode_result,
)
from mesh.core.schema import WireMessage
from mesh.core.tensors import Tensor
from mesh.core.values import decode_values, encode_values, values_from_wire, values_hash
from mesh.errors import (
    ERROR_CODES,
    BadSignature,
    Busy,
    InternalError,
    MalformedMessage,
    TooLarge,
)

pytestmark = pytest.mark.unit

SAMPLES: list[WireMessage] = [
    sample_task(),
    sample_receipt(),
    sample_capacity(),
    sample_verdict(),
    ErrorReply(code="busy", message="full", retry_after_ms=250, task_id=bytes(32)),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_wire_round_trip(message: WireMessage) -> None:
    wire = message.to_wire()
    again = type(message).from_wire(canonical.decode(canonical.encode(wire)))
    assert again == message


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_unknown_field_rejected(message: WireMessage) -> None:
    wire = message.to_wire() | {"zzz": 1}
    with pytest.raises(MalformedMessage, match="unknown"):
        type(message).from_wire(wire)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_each_missing_field_rejected(message: WireMessage) -> None:
    for name in message.to_wire():
        wire = message.to_wire()
        del wire[name]
        with pytest.raises(MalformedMessage):
            type(message).from_wire(wire)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_each_field_of_wrong_type_rejected(message: WireMessage) -> None:
    for name, value in message.to_wire().items():
        wrong: Any = "text" if not isinstance(value, str) else 5
        wire = message.to_wire() | {name: wrong}
        with pytest.raises(MalformedMessage):
            type(message).from_wire(wire)


def test_not_a_map_rejected() -> None:
    with pytest.raises(MalformedMessage):
        Task.from_wire([1, 2])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("client", bytes(31)),
        ("nonce", bytes(17)),
        ("created_ms", True),
        ("created_ms", -1),
        ("expires_ms", 2**63),
        ("target", bytes(5)),
        ("verify", "trust-me"),
        ("params", {"seed": True}),
        ("params", {"seed": "1"}),
        ("params", {"": 1} | {"x" * 33: 1}),
        ("params", {1: 1}),
    ],
)
def test_task_field_rules(field: str, value: Any) -> None:
    with pytest.raises((MalformedMessage, TooLarge)):
        dataclasses.replace(sample_task(), **{field: value})


def test_bool_is_not_int_and_int_is_not_bool() -> None:
    with pytest.raises(MalformedMessage):
        sample_verdict(agree=1)
    with pytest.raises(MalformedMessage):
        sample_verdict(distance_micro=False)


def test_caps_raise_too_large() -> None:
    with pytest.raises(TooLarge):
        sample_task(params={f"k{i}": i for i in range(MAX_PARAMS + 1)})
    with pytest.raises(TooLarge):
        sample_receipt(commitment=bytes(MAX_COMMITMENT_BYTES + 1))
    with pytest.raises(TooLarge):
        sample_capacity(addrs=("/ip4/1.2.3.4/tcp/1",) * 17)
    with pytest.raises(TooLarge):
        sample_capacity(device="x" * 1000)


def test_runtime_claim_accepts_str_int_bool_only() -> None:
    receipt = sample_receipt(runtime={"a": "x", "b": 3, "c": False})
    assert receipt.runtime == {"a": "x", "b": 3, "c": False}
    assert type(receipt.runtime["c"]) is bool
    with pytest.raises(MalformedMessage):
        sample_receipt(runtime={"a": [1]})
    with pytest.raises(MalformedMessage):
        sample_receipt(runtime={"a": None})


def test_lists_are_held_as_tuples() -> None:
    record = sample_capacity(addrs=["/ip4/127.0.0.1/tcp/1"])
    assert record.addrs == ("/ip4/127.0.0.1/tcp/1",)
    assert isinstance(record.to_wire()["addrs"], list)


def _raw_map(pairs: list[tuple[str, Any]]) -> bytes:
    # msgpack-python builds maps from dicts; write the pairs by hand instead.
    return bytes([0x80 | len(pairs)]) + b"".join(
        msgpack.packb(k, use_bin_type=True) + msgpack.packb(v, use_bin_type=True) for k, v in pairs
    )


def test_decoder_rejects_duplicate_field() -> None:
    pairs = sorted(sample_verdict().to_wire().items())
    index = [k for k, _ in pairs].index("agree")
    pairs.insert(index + 1, ("agree", False))  # msgpack alone would keep the last
    with pytest.raises(MalformedMessage, match="duplicate"):
        canonical.decode(_raw_map(pairs))


def test_decoder_rejects_unsorted_fields() -> None:
    pairs = sorted(sample_verdict().to_wire().items())
    assert canonical.decode(_raw_map(pairs)) == sample_verdict().to_wire()
    with pytest.raises(MalformedMessage, match="order"):
        canonical.decode(_raw_map(list(reversed(pairs))))


def test_decoder_rejects_non_canonical_integer() -> None:
    wire = sample_verdict().to_wire()
    canonical_bytes = canonical.encode(wire)
    # distance_micro=12 as uint32 (0xce) instead of a positive fixint.
    bad = canonical_bytes.replace(
        b"\xaedistance_micro\x0c", b"\xaedistance_micro\xce\x00\x00\x00\x0c"
    )
    assert bad != canonical_bytes
    with pytest.raises(MalformedMessage, match="non-canonical"):
        canonical.decode(bad)


def test_request_round_trip() -> None:
    task = signed_task()
    request = decode_request(encode_request(task, sample_inputs()))
    assert request.task == task
    assert request.inputs == sample_inputs()


def test_request_with_other_inputs_rejected() -> None:
    data = encode_request(signed_task(), {"text": ["something else"]})
    with pytest.raises(MalformedMessage, match="input_hash"):
        decode_request(data)


def test_request_with_forged_task_rejected() -> None:
    task = signed_task()
    wire = {
        "inputs": canonical.decode(encode_values(sample_inputs())),
        "kind": "task",
        "task": task.to_wire() | {"sig": bytes(64)},
    }
    with pytest.raises(BadSignature):
        decode_request(canonical.encode(wire))


def test_request_of_wrong_kind_rejected() -> None:
    with pytest.raises(MalformedMessage):
        decode_request(encode_result(signed_receipt(), sample_outputs()))


def test_result_round_trip() -> None:
    receipt = signed_receipt()
    response = decode_response(encode_result(receipt, sample_outputs()))
    assert isinstance(response, Result)
    assert response.receipt == receipt and response.outputs == sample_outputs()


def test_response_over_cap_rejected() -> None:
    data = encode_result(signed_receipt(), sample_outputs())
    with pytest.raises(TooLarge):
        decode_response(data, max_bytes=len(data) - 1)


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_error_reply_maps_every_code(code: str) -> None:
    exc = ERROR_CODES[code]("why") if code != "busy" else Busy("why", retry_after_ms=1500)
    reply = ErrorReply.from_exception(exc, task_id=bytes(32))
    decoded = decode_response(reply.encode())
    assert decoded == reply
    assert isinstance(decoded, ErrorReply)
    again = decoded.to_exception()
    assert type(again) is ERROR_CODES[code]
    if code == "busy":
        assert isinstance(again, Busy) and again.retry_after_ms == 1500


def test_error_reply_hides_foreign_exception_details() -> None:
    reply = ErrorReply.from_exception(RuntimeError("/secret/path"))
    assert reply.code == "internal" and "secret" not in reply.message
    assert isinstance(reply.to_exception(), InternalError)


def test_error_reply_truncates_long_messages() -> None:
    reply = ErrorReply.from_exception(MalformedMessage("é" * 5000))
    assert len(reply.message.encode()) <= 1024


def test_error_reply_unknown_code_rejected() -> None:
    wire = ErrorReply(code="busy", message="", retry_after_ms=0, task_id=b"").to_wire()
    with pytest.raises(MalformedMessage):
        ErrorReply.from_wire(wire | {"code": "nope"})
    with pytest.raises(MalformedMessage):
        ErrorReply.from_wire(wire | {"kind": "result"})


def test_values_round_trip_and_hash() -> None:
    values = sample_inputs()
    assert decode_values(encode_values(values)) == values
    assert values_hash(values) == values_hash(dict(reversed(values.items())))
    assert values_hash(values) != values_hash({"text": ["hello mesh"]})


@pytest.mark.parametrize(
    "wire",
    [
        [],
        {"": ["x"]},
        {"a": 5},
        {"a": [1]},
        {"a": {"dtype": "float32", "shape": [2], "data": b"1234"}},
        {"a": {"dtype": "complex", "shape": [1], "data": b"1234"}},
    ],
)
def test_values_from_bad_wire(wire: Any) -> None:
    with pytest.raises(MalformedMessage):
        values_from_wire(wire)


def test_values_caps() -> None:
    with pytest.raises(TooLarge):
        values_from_wire({f"v{i}": ["x"] for i in range(65)})
    with pytest.raises(TooLarge):
        values_from_wire({"t": ["x"] * 257})
    with pytest.raises(TooLarge):
        values_from_wire({"t": ["x" * (64 * 1024 + 1)]})
    with pytest.raises(TooLarge):
        values_from_wire({"t": {"dtype": "int8", "shape": [2**25], "data": b""}})
    tensor = Tensor("int8", (2,), b"ab")
    assert values_from_wire({"t": tensor.to_wire()}) == {"t": tensor}


def test_message_classes_are_frozen() -> None:
    for cls in (Task, Receipt, CapacityRecord, Verdict):
        assert dataclasses.is_dataclass(cls)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample_task().created_ms = 5  # type: ignore[misc]
    assert CLIENT.public_key == sample_task().client
