"""Every ``mesh node`` option explains itself, and the operator options are checked."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mesh.cli import build_parser
from mesh.cli.node import _announce_addr, build_config
from mesh.core.identity import Identity
from mesh.errors import ConfigError
from mesh.files.keyfile import write_key_file
from mesh.node.status_http import parse_listen

pytestmark = pytest.mark.unit


def node_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub._name_parser_map["node"]


def test_every_node_option_has_help_text() -> None:
    missing = [
        "/".join(action.option_strings) or action.dest
        for action in node_parser()._actions
        if not (action.help and action.help.strip() and action.help != argparse.SUPPRESS)
    ]
    assert missing == []


@pytest.mark.parametrize(
    "text",
    ["/ip4/203.0.113.7/tcp/4001", "/ip6/2001:db8::7/tcp/4001", "/dns4/node.example.org/tcp/4001"],
)
def test_announce_takes_a_dialable_tcp_address(text: str) -> None:
    assert _announce_addr(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "/ip4/0.0.0.0/tcp/4001",  # nobody can dial it
        "/ip4/203.0.113.7/tcp/0",  # not the port others dial
        "/ip4/203.0.113.7/udp/4001/quic",  # not TCP
        "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWEZyAGYRSZ71GXSqkUzDBag2k6ieZnWtdvZhoYhZXcfCA",
        "not an address",
    ],
)
def test_announce_refuses_what_nobody_can_dial(text: str) -> None:
    with pytest.raises(ConfigError):
        _announce_addr(text)


def test_metrics_address_forms() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9464", "host:", "host:99999", ":9464"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_operator_options_reach_the_node_config(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    write_key_file(key, Identity.generate())
    args = build_parser().parse_args(
        ["node", "--key", str(key), "--models", "tiny-mlp",
         "--announce", "/ip4/203.0.113.7/tcp/4001", "--metrics", "0.0.0.0:9464",
         "--no-self-check"]
    )  # fmt: skip
    config = build_config(args)
    assert config.announce == ("/ip4/203.0.113.7/tcp/4001",)
    assert config.http_listen == ("0.0.0.0", 9464)
    assert config.self_check is False
    defaults = build_config(build_parser().parse_args(["node", "--key", str(key), "--models", "x"]))
    assert defaults.http_listen == ("127.0.0.1", 0) and defaults.self_check is True
    off = build_parser().parse_args(
        ["node", "--key", str(key), "--models", "x", "--metrics", "off"]
    )
    assert build_config(off).http_listen is None
