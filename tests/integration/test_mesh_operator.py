"""The operator path: ``mesh node`` started by hand joins a running testnet and serves.

A key made with ``mesh keygen``, ``mesh node --listen /ip4/127.0.0.1/tcp/0
--bootstrap FILE`` in its own process; then a client that only knows the
testnet's bootstrap file (not the new node's address) finds the node through
the DHT, lists it in ``mesh peers`` and gets a task served by it with a
receipt ``mesh verify`` accepts. Ctrl-C (SIGINT) drains it: exit code 0.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from meshproc import ROW, TestnetProcess, mesh_cli, start_node_process, verify_receipt_files

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_mesh_node_started_by_hand_joins_the_testnet_and_serves(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    key = tmp_path / "operator.key"
    made = mesh_cli("keygen", "--out", str(key))
    assert made.returncode == 0, made.stderr
    peer_id = made.stdout.strip()  # keygen prints the new key's PeerID
    assert peer_id.startswith("12D3KooW")

    node = start_node_process(
        [sys.executable, "-m", "mesh", "node", "--key", str(key),
         "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", str(shared_testnet.bootstrap),
         "--models", "tiny-mlp", "--device", "cpu", "--threads", "1"],
    )  # fmt: skip
    try:
        assert node.peer_id == peer_id
        assert node.models == "tiny-mlp"
        assert node.addrs and node.addrs[0].startswith("/ip4/127.0.0.1/tcp/")

        receipt = tmp_path / "op.receipt"
        run = mesh_cli(
            "run", "tiny-mlp", "--bootstrap", str(shared_testnet.bootstrap),
            "--input", json.dumps({"x": [ROW]}), "--target", peer_id, "--json",
            "--receipt-out", str(receipt),
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        assert doc["worker"] == peer_id and doc["receipt"]["seq"] == 0
        assert verify_receipt_files(receipt).returncode == 0

        peers = mesh_cli("peers", "--bootstrap", str(shared_testnet.bootstrap), "--json")
        assert peers.returncode == 0, peers.stderr
        rows = {row["peer_id"]: row for row in json.loads(peers.stdout)}
        assert rows[peer_id]["models"] == ["tiny-mlp"]

        assert node.stop(signal.SIGINT) == 0
        # The receipt log sits next to the key unless --data-dir says otherwise.
        assert any((tmp_path / "operator.key.data").iterdir())
    finally:
        node.kill()
