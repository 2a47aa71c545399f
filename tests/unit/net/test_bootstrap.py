"""Bootstrap files: one multiaddr with /p2p/ per line, comments, line-numbered errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.errors import ConfigError
from mesh.net.bootstrap import load_bootstrap_file, parse_bootstrap_lines
from mesh.net.multiaddrs import parse_peer_addr

pytestmark = pytest.mark.unit

PEER = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
GOOD = f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"
DNS = f"/dns4/boot.example.org/tcp/4001/p2p/{PEER}"
REPO_ROOT = Path(__file__).resolve().parents[3]


def test_comments_blank_lines_and_duplicates_are_skipped() -> None:
    lines = ["# header", "", f"  {GOOD}  ", f"{DNS}   # trailing comment", GOOD, "   # indented"]
    assert parse_bootstrap_lines(lines) == [GOOD, DNS]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("/ip4/127.0.0.1/tcp/4001", "missing /p2p/"),
        ("/ip4/127.0.0.1/tcp/4001/p2p/notapeer", "not a multiaddr"),
        ("hello", "not a multiaddr"),
        ("/ip4/999.0.0.1/tcp/1/p2p/" + PEER, "not a multiaddr"),
        (f"/p2p/{PEER}", "no transport address"),
        (f"/ip4/127.0.0.1/tcp/1/p2p/{PEER}/tcp/2", "must end"),
    ],
)
def test_bad_lines_name_file_and_line(line: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_bootstrap_lines(["# ok", GOOD, line], source="boot.txt")
    assert "boot.txt:3" in str(info.value)
    assert why in str(info.value)


def test_single_address_is_canonicalised() -> None:
    assert parse_peer_addr(GOOD) == GOOD


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "peers.txt"
    path.write_text(f"# peers\n{GOOD}\n\n/ip4/1.2.3.4/tcp/1\n")
    with pytest.raises(ConfigError, match=r"peers.txt:4"):
        load_bootstrap_file(path)
    path.write_text(f"{GOOD}\n")
    assert load_bootstrap_file(path) == [GOOD]


def test_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_bootstrap_file(tmp_path / "absent.txt")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_bootstrap_file(binary)


def test_the_shipped_bootstrap_file_parses_and_has_no_live_entries() -> None:
    assert load_bootstrap_file(REPO_ROOT / "bootstrap-nodes.txt") == []
