"""Signing: PAE, envelope checks, a tampering test for every signed field, expiry."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from core_samples import (
    AUDITOR,
    CLIENT,
    NOW_MS,
    OTHER,
    WORKER,
    sample_capacity,
    sample_receipt,
    sample_task,
    sample_verdict,
    signed_receipt,
    signed_task,
)

from mesh.core import canonical, limits
from mesh.core.envelope import SignedMessage, open_signed, pae, sign_message
from mesh.core.identity import Identity
from mesh.core.messages import CapacityRecord, Receipt, Task, Verdict
from mesh.core.signing import verify_capacity, verify_task, verify_verdict
from mesh.errors import BadSignature, Expired, MalformedMessage, TaskMismatch

pytestmark = pytest.mark.unit

SIGNERS: dict[type, Identity] = {
    Task: CLIENT,
    Receipt: WORKER,
    CapacityRecord: WORKER,
    Verdict: AUDITOR,
}
MESSAGES: list[SignedMessage] = [
    sample_task(),
    sample_receipt(),
    sample_capacity(),
    sample_verdict(),
]


def _tweak(value: Any) -> Any:
    """A different value of the same kind, still valid for the schema."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, bytes):
        if not value:
            return bytes(32)  # target, commitment: empty -> 32 bytes is valid for both
        return bytes([value[0] ^ 1]) + value[1:]
    if isinstance(value, str):
        swaps = {"audit": "signature", "signature": "audit", "outputs": "commitment"}
        return swaps.get(value, value + "x")
    if isinstance(value, tuple):
        return (_tweak(value[0]), *value[1:])
    if isinstance(value, dict):
        key = next(iter(value))
        return value | {key: _tweak(value[key])}
    raise AssertionError(f"no tweak for {value!r}")


def test_pae_exact_bytes() -> None:
    assert pae("mesh/task/v1", b"abc") == b"MESHv1 12 mesh/task/v1 3 abc"
    assert pae("t", b"") == b"MESHv1 1 t 0 "


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_sign_then_open(message: SignedMessage) -> None:
    signed = sign_message(SIGNERS[type(message)], message)
    opened = open_signed(signed.envelope, type(message))
    assert opened == signed
    assert opened.message == message
    assert open_signed(canonical.decode(signed.envelope), type(message)) == signed
    assert len(signed.digest) == 32 and signed.type == message.TYPE


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_tampering_with_any_signed_field_breaks_signature(message: SignedMessage) -> None:
    signer = SIGNERS[type(message)]
    signed = sign_message(signer, message)
    fields = [f.name for f in dataclasses.fields(message)]  # type: ignore[arg-type]
    assert len(fields) >= 7
    for name in fields:
        changed = dataclasses.replace(message, **{name: _tweak(getattr(message, name))})  # type: ignore[type-var]
        assert changed != message, name
        body = canonical.encode(changed.to_wire())
        forged = canonical.encode(signed.to_wire() | {"body": body})
        with pytest.raises(BadSignature):
            open_signed(forged, type(message))
        if name != message.SIGNER:
            # The same change, honestly signed, opens: only the signature was wrong.
            assert (
                open_signed(sign_message(signer, changed).envelope, type(message)).message
                == changed
            )


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_tampering_with_envelope_fields(message: SignedMessage) -> None:
    signed = sign_message(SIGNERS[type(message)], message)
    wire = signed.to_wire()
    bad_sig = wire | {"sig": bytes([wire["sig"][0] ^ 1]) + wire["sig"][1:]}
    with pytest.raises(BadSignature):
        open_signed(canonical.encode(bad_sig), type(message))
    with pytest.raises(BadSignature):
        open_signed(canonical.encode(wire | {"key": OTHER.public_key}), type(message))
    for key, value in [("sig", bytes(63)), ("key", bytes(33)), ("body", "text"), ("type", b"x")]:
        with pytest.raises(MalformedMessage):
            open_signed(canonical.encode(wire | {key: value}), type(message))
    with pytest.raises(MalformedMessage):
        open_signed(canonical.encode(wire | {"extra": 1}), type(message))


def test_type_string_separates_domains() -> None:
    signed = sign_message(WORKER, sample_capacity())
    # A validly signed capacity record cannot pass as a receipt, even relabelled.
    with pytest.raises(MalformedMessage):
        open_signed(signed.envelope, Receipt)
    relabelled = canonical.encode(signed.to_wire() | {"type": Receipt.TYPE})
    with pytest.raises(BadSignature):
        open_signed(relabelled, Receipt)


def test_signer_field_must_match_key() -> None:
    # OTHER signs a task naming CLIENT as its client: a valid signature, wrong signer.
    task = sample_task()
    body = canonical.encode(task.to_wire())
    sig = OTHER.sign(pae(Task.TYPE, body))
    envelope = canonical.encode(
        {"body": body, "key": OTHER.public_key, "sig": sig, "type": Task.TYPE}
    )
    with pytest.raises(BadSignature, match="client"):
        open_signed(envelope, Task)
    with pytest.raises(BadSignature):
        sign_message(OTHER, task)


def test_non_canonical_body_rejected_after_signature() -> None:
    task = sample_task()
    body = canonical.encode(task.to_wire()) + b"\x00"  # trailing byte, validly signed
    sig = CLIENT.sign(pae(Task.TYPE, body))
    envelope = canonical.encode(
        {"body": body, "key": CLIENT.public_key, "sig": sig, "type": Task.TYPE}
    )
    with pytest.raises(MalformedMessage):
        open_signed(envelope, Task)


def test_task_id_is_digest_of_envelope() -> None:
    import hashlib

    task = signed_task()
    assert task.digest == hashlib.sha256(task.envelope).digest()
    assert signed_task(nonce=bytes(16)).digest != task.digest


class TestTaskExpiry:
    def test_valid_inside_window(self) -> None:
        task = signed_task()
        verify_task(task, now_ms=NOW_MS)
        verify_task(task, now_ms=NOW_MS + 60_000)  # the expiry instant itself is valid

    def test_expired_one_ms_after(self) -> None:
        with pytest.raises(Expired, match="expired"):
            verify_task(signed_task(), now_ms=NOW_MS + 60_001)

    def test_created_in_the_future_beyond_skew(self) -> None:
        task = signed_task()
        verify_task(task, now_ms=NOW_MS - limits.MAX_CLOCK_SKEW_MS)
        with pytest.raises(Expired, match="future"):
            verify_task(task, now_ms=NOW_MS - limits.MAX_CLOCK_SKEW_MS - 1)

    def test_window_too_long_or_negative(self) -> None:
        long = signed_task(expires_ms=NOW_MS + limits.MAX_TASK_WINDOW_MS + 1)
        with pytest.raises(Expired, match="window"):
            verify_task(long, now_ms=NOW_MS)
        verify_task(signed_task(expires_ms=NOW_MS + limits.MAX_TASK_WINDOW_MS), now_ms=NOW_MS)
        with pytest.raises(Expired):
            verify_task(signed_task(expires_ms=NOW_MS - 1), now_ms=NOW_MS - 1)

    def test_custom_window_and_skew(self) -> None:
        with pytest.raises(Expired):
            verify_task(signed_task(), now_ms=NOW_MS, max_window_ms=1000)
        with pytest.raises(Expired):
            verify_task(signed_task(), now_ms=NOW_MS - 2, skew_ms=1)


class TestCapacity:
    def test_valid(self) -> None:
        record = sign_message(WORKER, sample_capacity())
        verify_capacity(record, now_ms=NOW_MS + 1000, expected_peer=WORKER.public_key)
        verify_capacity(record, now_ms=NOW_MS + 300_000)

    def test_expired(self) -> None:
        with pytest.raises(Expired):
            verify_capacity(sign_message(WORKER, sample_capacity()), now_ms=NOW_MS + 300_001)

    def test_wrong_peer(self) -> None:
        record = sign_message(WORKER, sample_capacity())
        with pytest.raises(BadSignature):
            verify_capacity(record, now_ms=NOW_MS, expected_peer=OTHER.public_key)

    def test_ttl_too_long(self) -> None:
        expires = NOW_MS + limits.MAX_CAPACITY_TTL_MS + 1
        record = sign_message(WORKER, sample_capacity(expires_ms=expires))
        with pytest.raises(Expired, match="lifetime"):
            verify_capacity(record, now_ms=NOW_MS)

    def test_created_in_future(self) -> None:
        record = sign_message(WORKER, sample_capacity())
        with pytest.raises(Expired, match="future"):
            verify_capacity(record, now_ms=NOW_MS - limits.MAX_CLOCK_SKEW_MS - 1)


def test_verdict_binds_receipt() -> None:
    receipt = signed_receipt()
    verdict = sign_message(AUDITOR, sample_verdict(receipt))
    verify_verdict(verdict, receipt=receipt)
    verify_verdict(verdict)
    other = signed_receipt(signed_task(nonce=bytes(16)))
    with pytest.raises(TaskMismatch):
        verify_verdict(verdict, receipt=other)
    lying = sign_message(AUDITOR, sample_verdict(receipt, worker=OTHER.public_key))
    with pytest.raises(TaskMismatch):
        verify_verdict(lying, receipt=receipt)
