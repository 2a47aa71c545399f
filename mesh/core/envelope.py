"""Signed envelopes: DSSE-style signatures over the exact bytes received.

Every signed message travels as the canonical map::

    {"body": bin, "key": bin(32), "sig": bin(64), "type": str}

where ``body`` is the canonical MessagePack of the message's fields and ``sig`` is
Ed25519 by ``key`` over the pre-authentication encoding (:func:`pae`)::

    b"MESHv1 " + len(type) + b" " + type + b" " + len(body) + b" " + body

(lengths in ASCII decimal). The type string separates domains: a receipt
signature can never be replayed as a task or a libp2p handshake.

:func:`open_signed` checks, in this order: the envelope's shape, the signature
over the *received* body bytes, the strict canonical decoding of the body, and
that the body's signer field equals ``key``. Only then is a :class:`Signed`
built; it keeps the signed bytes, so nothing is ever re-encoded to be checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from mesh.core import canonical
from mesh.core.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, verify_signature
from mesh.core.schema import WireMessage
from mesh.errors import BadSignature, MalformedMessage

_PAE_PREFIX = b"MESHv1 "
_ENVELOPE_KEYS = frozenset({"body", "key", "sig", "type"})


class SignedMessage(WireMessage):
    """A message kind that travels signed.

    Subclasses set ``TYPE`` (the PAE type string) and ``SIGNER`` (the name of the
    field holding the signer's public key).
    """

    __slots__ = ()
    TYPE: ClassVar[str]
    SIGNER: ClassVar[str]

    @property
    def signer(self) -> bytes:
        """The public key the message claims as its signer."""
        value: bytes = getattr(self, self.SIGNER)
        return value


M = TypeVar("M", bound=SignedMessage)


def pae(type_: str, body: bytes) -> bytes:
    """The pre-authentication encoding that is actually signed."""
    type_bytes = type_.encode("utf-8")
    return b"".join(
        (
            _PAE_PREFIX,
            str(len(type_bytes)).encode("ascii"),
            b" ",
            type_bytes,
            b" ",
            str(len(body)).encode("ascii"),
            b" ",
            body,
        )
    )


@dataclass(frozen=True, slots=True)
class Signed(Generic[M]):
    """A verified (or freshly signed) message with the exact bytes that were signed.

    Build one with :func:`sign_message` or :func:`open_signed` only: the
    constructor does not verify.

    Attributes:
        message: the decoded message.
        body: the canonical bytes of the message (what the signature covers).
        key: the signer's 32-byte public key.
        sig: the 64-byte Ed25519 signature.
        envelope: the canonical bytes of the envelope map.
        digest: SHA-256 of ``envelope`` (a task's id; a receipt's chain link).
    """

    message: M
    body: bytes
    key: bytes
    sig: bytes
    envelope: bytes
    digest: bytes

    @property
    def type(self) -> str:
        return self.message.TYPE

    def to_wire(self) -> dict[str, Any]:
        """The envelope map (to nest inside another message)."""
        return {"body": self.body, "key": self.key, "sig": self.sig, "type": self.message.TYPE}


def sign_message(identity: Identity, message: M) -> Signed[M]:
    """Sign ``message`` with ``identity``, which must be the message's signer.

    Raises:
        BadSignature: ``identity`` is not the key named in the message's signer field.
    """
    if message.signer != identity.public_key:
        raise BadSignature(f"{type(message).__name__} names another signer than this identity")
    body = canonical.encode(message.to_wire())
    sig = identity.sign(pae(message.TYPE, body))
    envelope = canonical.encode(
        {"body": body, "key": identity.public_key, "sig": sig, "type": message.TYPE}
    )
    return Signed(message, body, identity.public_key, sig, envelope, _sha256(envelope))


def open_signed(envelope: bytes | Mapping[str, Any], expected: type[M]) -> Signed[M]:
    """Check an envelope (its bytes, or its decoded map when nested) and decode it.

    Args:
        envelope: the envelope's canonical bytes, or the map decoded from them.
        expected: the message class the envelope must carry (its ``TYPE`` must match).

    Raises:
        MalformedMessage: the envelope or body is not canonical or breaks the schema,
            or carries another type.
        TooLarge: a field is over a cap.
        BadSignature: the signature does not verify, or the body's signer is not ``key``.
    """
    if isinstance(envelope, (bytes, bytearray, memoryview)):
        raw = bytes(envelope)
        wire = canonical.decode(raw)
    else:
        wire = envelope
        raw = b""
    if not isinstance(wire, Mapping) or wire.keys() != _ENVELOPE_KEYS:
        raise MalformedMessage("an envelope is a map of exactly body, key, sig, type")
    body, key, sig, type_ = wire["body"], wire["key"], wire["sig"], wire["type"]
    if type(type_) is not str or type_ != expected.TYPE:
        raise MalformedMessage(f"expected a {expected.TYPE} envelope")
    if type(body) is not bytes:
        raise MalformedMessage("envelope body must be bytes")
    if type(key) is not bytes or len(key) != PUBLIC_KEY_BYTES:
        raise MalformedMessage(f"envelope key must be {PUBLIC_KEY_BYTES} bytes")
    if type(sig) is not bytes or len(sig) != SIGNATURE_BYTES:
        raise MalformedMessage(f"envelope sig must be {SIGNATURE_BYTES} bytes")
    if not raw:
        # A nested envelope is hashed as its canonical encoding, which is exactly
        # the bytes it had inside the (already canonical) outer message.
        raw = canonical.encode(wire)
    try:
        verify_signature(key, pae(type_, body), sig)
    except BadSignature as exc:
        raise BadSignature(f"{expected.TYPE} signature does not verify") from exc
    message = expected.from_wire(canonical.decode(body))
    if message.signer != key:
        raise BadSignature(f"{expected.TYPE} signed by a key other than its {expected.SIGNER}")
    return Signed(message, body, key, sig, raw, _sha256(raw))


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
