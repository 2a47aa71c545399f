"""Key files: private (mode 0600) from creation, never overwritten, refused when readable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mesh.core.identity import KEY_FILE_MAGIC, Identity
from mesh.errors import KeyFileError
from mesh.files.keyfile import load_key_file, write_key_file

pytestmark = pytest.mark.unit


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
