"""Mistakes a new operator makes, refused at once with a message that says what is wrong.

- a second node on a port already in use (py-libp2p listens with SO_REUSEPORT,
  so it used to start and split the connections with the first);
- a second node with a key that is already running (it used to join the mesh
  first and leave the real node unreachable for many minutes);
- ``mesh testnet --work-dir W`` started again on the same W (it used to fail
  on "record 0 is another worker's"): it restarts with the same nodes.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from meshproc import ENV, ROW, mesh_cli, start_node_process, start_testnet

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _node_command(key: Path, listen: str, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "mesh", "node", "--key", str(key), "--listen", listen,
            "--models", "tiny-mlp", "--device", "cpu", "--threads", "1",
            "--data-dir", str(data_dir)]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _keygen(path: Path) -> str:
    made = mesh_cli("keygen", "--out", str(path))
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_a_port_in_use_and_a_running_key_are_refused_at_once(tmp_path: Path) -> None:
    key, other_key = tmp_path / "a.key", tmp_path / "b.key"
    peer_id = _keygen(key)
    _keygen(other_key)
    port = _free_port()
    listen = f"/ip4/127.0.0.1/tcp/{port}"
    first = start_node_process(_node_command(key, listen, tmp_path / "a.data"))
    try:
        # Another key on the same port: refused, naming the port.
        second = subprocess.run(
            _node_command(other_key, listen, tmp_path / "b.data"),
            capture_output=True, text=True, timeout=120, env=ENV,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"TCP port {port} is already in use" in second.stderr
        assert not second.stdout.startswith("node ")  # never reported itself ready

        # The same key on another port: refused before it joins the network,
        # naming the key and the running node's process.
        twin = subprocess.run(
            _node_command(key, "/ip4/127.0.0.1/tcp/0", tmp_path / "twin.data"),
            capture_output=True, text=True, timeout=120, env=ENV,
        )  # fmt: skip
        assert twin.returncode == 1
        assert f"key {peer_id} is already in use by a running node" in twin.stderr
        assert f"pid {first.proc.pid}" in twin.stderr
        assert "listening" not in twin.stdout

        # The first node never noticed: it still serves.
        bootstrap = tmp_path / "boot.txt"
        bootstrap.write_text(f"{first.addrs[0]}\n")
        run = mesh_cli(
            "run", "tiny-mlp", "--bootstrap", str(bootstrap),
            "--input", json.dumps({"x": [ROW]}), "--target", peer_id, "--json",
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert first.stop(signal.SIGINT) == 0
    finally:
        first.kill()


def test_a_testnet_restarts_on_its_own_work_dir(tmp_path: Path) -> None:
    first = start_testnet(tmp_path, nodes=2)
    try:
        peers = {n.peer_id for n in first.nodes}
        assert first.stop(signal.SIGTERM) == 0
    finally:
        first.kill_everything()
    again = start_testnet(tmp_path, nodes=2)  # the same --work-dir (tmp_path/nodes)
    try:
        assert {n.peer_id for n in again.nodes} == peers  # the same nodes, keys reused
        assert again.stop(signal.SIGTERM) == 0
    finally:
        again.kill_everything()
