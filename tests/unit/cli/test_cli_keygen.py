"""``mesh keygen --out PATH`` on a fresh machine: missing folders are made private (0700)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mesh.cli import main
from mesh.files.keyfile import load_key_file

pytestmark = pytest.mark.unit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_creates_missing_folders_with_mode_0700(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "home" / ".mesh" / "node.key"
    assert main(["keygen", "--out", str(key)]) == 0
    peer_id = capsys.readouterr().out.strip()
    assert load_key_file(key).peer_id == peer_id
    assert mode(key) == 0o600
    assert mode(tmp_path / "home") == 0o700 and mode(tmp_path / "home" / ".mesh") == 0o700


def test_keygen_leaves_existing_folders_alone(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    assert main(["keygen", "--out", str(folder / "node.key")]) == 0
    assert mode(folder) == 0o755


def test_keygen_never_overwrites_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k" / "node.key"
    assert main(["keygen", "--out", str(key)]) == 0
    first = key.read_bytes()
    assert main(["keygen", "--out", str(key)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert key.read_bytes() == first


def test_keygen_reports_a_folder_it_cannot_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["keygen", "--out", str(blocker / "sub" / "node.key")]) == 1
    assert "cannot create folder" in capsys.readouterr().err
