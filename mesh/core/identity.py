"""Peer identity: one 32-byte Ed25519 seed backs signatures and the libp2p PeerID.

The PeerID is computed here without libp2p, exactly as py-libp2p 0.8.1 does for
Ed25519 keys: base58btc of the *identity* multihash (code ``0x00``, length) of the
protobuf-encoded ``PublicKey{Type: Ed25519 (1), Data: pk}`` message. Ed25519 keys
are short enough (36 bytes serialized) that libp2p inlines them instead of hashing,
which is why every such PeerID starts with ``12D3KooW`` and why the public key can
be read back out of it (:func:`public_key_from_peer_id`).

Key files (the seed on disk) are kept by :mod:`mesh.files.keyfile`; this module
only parses and formats their one line (:func:`format_key_line`, :func:`parse_key_line`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

from mesh.errors import BadSignature, ConfigError, KeyFileError, MalformedMessage

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_FILE_MAGIC = "mesh-ed25519-seed-v1"

# Protobuf PublicKey{Type=Ed25519 (field 1, varint 1), Data (field 2, 32 bytes)}.
_PROTO_PREFIX = b"\x08\x01\x12\x20"
# Identity multihash: code 0x00, then the length of the inlined 36 bytes.
_MULTIHASH_PREFIX = b"\x00" + bytes([len(_PROTO_PREFIX) + PUBLIC_KEY_BYTES])
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
# A PeerID of an Ed25519 key is 52 or 53 characters; refuse long strings before
# the quadratic-time base58 decode.
_MAX_PEER_ID_CHARS = 64


@dataclass(frozen=True, slots=True)
class Identity:
    """A peer's signing identity.

    Attributes:
        seed: the 32-byte Ed25519 seed (secret; not shown in ``repr``).
        public_key: the 32-byte Ed25519 public key.
        peer_id: the libp2p PeerID string of ``public_key``.
    """

    seed: bytes = field(repr=False)
    public_key: bytes = field(init=False)
    peer_id: str = field(init=False)
    _signing_key: nacl.signing.SigningKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_BYTES:
            raise ConfigError(f"an Ed25519 seed is exactly {SEED_BYTES} bytes")
        # Keep the derived key: building a SigningKey costs a scalar multiplication.
        signing_key = nacl.signing.SigningKey(self.seed)
        public_key = bytes(signing_key.verify_key)
        object.__setattr__(self, "_signing_key", signing_key)
        object.__setattr__(self, "public_key", public_key)
        object.__setattr__(self, "peer_id", peer_id_from_public_key(public_key))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Build the identity of a 32-byte seed."""
        return cls(seed)

    @classmethod
    def generate(cls) -> Identity:
        """A fresh identity from the operating system's random source."""
        return cls(secrets.token_bytes(SEED_BYTES))

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return self._signing_key.sign(data).signature


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature of ``data`` by ``public_key``.

    Raises:
        BadSignature: the signature does not verify, or the key or signature is malformed.
    """
    try:
        nacl.signing.VerifyKey(public_key).verify(data, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise BadSignature("Ed25519 signature does not verify") from exc


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p PeerID (base58btc string) of an Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise MalformedMessage(f"an Ed25519 public key is exactly {PUBLIC_KEY_BYTES} bytes")
    return _b58encode(_MULTIHASH_PREFIX + _PROTO_PREFIX + public_key)


def public_key_from_peer_id(peer_id: str) -> bytes:
    """The Ed25519 public key inlined in a PeerID. Raises MalformedMessage otherwise."""
    if not isinstance(peer_id, str) or not 0 < len(peer_id) <= _MAX_PEER_ID_CHARS:
        raise MalformedMessage("not an Ed25519 PeerID")
    raw = _b58decode(peer_id)
    prefix = _MULTIHASH_PREFIX + _PROTO_PREFIX
    if len(raw) != len(prefix) + PUBLIC_KEY_BYTES or not raw.startswith(prefix):
        raise MalformedMessage("not an Ed25519 PeerID")
    return raw[len(prefix) :]


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    chars: list[str] = []
    while number:
        number, digit = divmod(number, 58)
        chars.append(_B58_ALPHABET[digit])
    # Each leading zero byte is written as the zero digit "1".
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(chars))


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise MalformedMessage(f"invalid base58 character {char!r}")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * zeros + body


def format_key_line(identity: Identity) -> bytes:
    """The one line of a key file: ``mesh-ed25519-seed-v1 <hex seed>`` and a newline."""
    return f"{KEY_FILE_MAGIC} {identity.seed.hex()}\n".encode("ascii")


def parse_key_line(content: bytes, *, source: str) -> Identity:
    """The identity in a key file's content (``source`` names the file in errors).

    Raises:
        KeyFileError: not a ``mesh-ed25519-seed-v1`` line with a 32-byte hex seed.
    """
    parts = content.decode("ascii", errors="replace").split()
    if len(parts) != 2 or parts[0] != KEY_FILE_MAGIC:
        raise KeyFileError(f"key file {source} is not a {KEY_FILE_MAGIC} file")
    try:
        seed = bytes.fromhex(parts[1])
    except ValueError as exc:
        raise KeyFileError(f"key file {source} holds invalid hex") from exc
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"key file {source} holds {len(seed)} bytes, expected {SEED_BYTES}")
    return Identity(seed)
