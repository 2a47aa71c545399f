"""Identity: PeerIDs agree with py-libp2p 0.8.1; signatures verify or raise."""

from __future__ import annotations

import os

import pytest

from mesh.core.identity import (
    Identity,
    peer_id_from_public_key,
    public_key_from_peer_id,
    verify_signature,
)
from mesh.errors import BadSignature, ConfigError, MalformedMessage

pytestmark = pytest.mark.unit

SEEDS = [bytes(32), bytes(range(32)), b"\xff" * 32, bytes([0, 0, 0, 1] * 8), os.urandom(32)]


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s.hex()[:8])
def test_peer_id_matches_libp2p(seed: bytes) -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    pair = create_new_key_pair(seed)
    expected = ID.from_pubkey(pair.public_key).to_base58()
    identity = Identity.from_seed(seed)
    assert identity.peer_id == expected
    assert identity.public_key == pair.public_key.to_bytes()
    assert identity.peer_id.startswith("12D3KooW")


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s.hex()[:8])
def test_public_key_round_trips_through_peer_id(seed: bytes) -> None:
    identity = Identity.from_seed(seed)
    assert public_key_from_peer_id(identity.peer_id) == identity.public_key
    assert peer_id_from_public_key(identity.public_key) == identity.peer_id


@pytest.mark.parametrize(
    "text",
    ["", "0OIl", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "1" * 65, "12D3KooW", "é"],
)
def test_public_key_from_bad_peer_id_is_malformed(text: str) -> None:
    with pytest.raises(MalformedMessage):
        public_key_from_peer_id(text)


def test_signature_is_deterministic_and_verifies() -> None:
    identity = Identity.from_seed(bytes(range(32)))
    sig = identity.sign(b"data")
    assert sig == identity.sign(b"data") and len(sig) == 64
    verify_signature(identity.public_key, b"data", sig)  # returns None: valid
    with pytest.raises(BadSignature):
        verify_signature(identity.public_key, b"datb", sig)
    with pytest.raises(BadSignature):
        verify_signature(bytes(32), b"data", sig)
    with pytest.raises(BadSignature):
        verify_signature(identity.public_key, b"data", sig[:63])


def test_repr_hides_seed() -> None:
    identity = Identity.from_seed(bytes([0xAB]) * 32)
    assert "abab" not in repr(identity).lower() and "\\xab" not in repr(identity)


def test_seed_length_checked() -> None:
    with pytest.raises(ConfigError):
        Identity.from_seed(bytes(31))


def test_generate_gives_distinct_identities() -> None:
    assert Identity.generate().public_key != Identity.generate().public_key
