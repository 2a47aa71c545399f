"""Identity: PeerIDs agree with py-libp2p 0.8.1; key files are private and never overwritten."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mesh.core.identity import (
    KEY_FILE_MAGIC,
    Identity,
    load_key_file,
    peer_id_from_public_key,
    public_key_from_peer_id,
    verify_signature,
    write_key_file,
)
from mesh.errors import KeyFileError, MalformedMessage

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
    assert verify_signature(identity.public_key, b"data", sig)
    assert not verify_signature(identity.public_key, b"datb", sig)
    assert not verify_signature(bytes(32), b"data", sig)


def test_repr_hides_seed() -> None:
    identity = Identity.from_seed(bytes([0xAB]) * 32)
    assert "abab" not in repr(identity).lower() and "\\xab" not in repr(identity)


def test_seed_length_checked() -> None:
    with pytest.raises(ValueError):
        Identity.from_seed(bytes(31))


def test_generate_gives_distinct_identities() -> None:
    assert Identity.generate().public_key != Identity.generate().public_key


def test_key_file_round_trip_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    identity = Identity.generate()
    write_key_file(path, identity)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith(KEY_FILE_MAGIC + " ")
    assert load_key_file(path).public_key == identity.public_key


def test_key_file_mode_0600_despite_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_key_file(tmp_path / "k", Identity.generate())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_key_file_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first = Identity.generate()
    write_key_file(path, first)
    with pytest.raises(KeyFileError, match="exists"):
        write_key_file(path, Identity.generate())
    assert load_key_file(path).seed == first.seed


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o700 | 0o020])
def test_key_file_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, Identity.generate())
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key_file(tmp_path / "absent")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage",
        f"{KEY_FILE_MAGIC} {'00' * 31}\n".encode(),
        f"{KEY_FILE_MAGIC} {'zz' * 32}\n".encode(),
        f"other-magic {'00' * 32}\n".encode(),
        bytes(range(256)),
    ],
)
def test_bad_key_file_content(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        load_key_file(path)


def test_key_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(KeyFileError):
        load_key_file(tmp_path / "d")
