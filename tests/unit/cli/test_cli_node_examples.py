"""The operator examples stay in step with ``mesh node``: every option is in
examples/node.toml, the file loads, and the systemd unit's stop timeout outlasts the drain."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from mesh.cli import build_parser, nodeconf

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def node_settings() -> nodeconf.Settings:
    return nodeconf.settings_of(build_parser(), "node")


def test_node_toml_documents_every_option() -> None:
    text = (EXAMPLES / "node.toml").read_text()
    written = set(re.findall(r"^#? ?([a-z][a-z0-9_-]*) = ", text, flags=re.MULTILINE))
    keys = {option.key for option in node_settings().options.values()}
    assert keys - written == set(), "add these options to examples/node.toml"
    assert written - keys == set(), "examples/node.toml names options mesh node lacks"


def test_node_toml_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    values = node_settings().read_file(EXAMPLES / "node.toml")
    assert values["key"] == tmp_path / ".mesh" / "node.key"
    assert values["bootstrap"] == EXAMPLES / "bootstrap.txt"  # next to the file
    assert values["listen"] == ["/ip4/0.0.0.0/tcp/4001"] and values["models"] == "tiny-mlp"


def test_service_stop_timeout_outlasts_the_drain() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(EXAMPLES / "mesh-node.service")
    service = unit["Service"]
    drain = node_settings().options["drain_timeout"].default
    assert float(service["TimeoutStopSec"]) > drain
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "on-failure"
    assert service["User"] != "root"
    assert "--config /etc/mesh/node.toml" in service["ExecStart"]
