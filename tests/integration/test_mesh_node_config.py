"""``mesh node --config FILE``: a real node configured by a TOML file joins a real testnet.

The file sets the key, listen address, bootstrap file, models, device, data dir,
region, price and queue size (paths relative to the file's folder); the environment
overrides the region (``MESH_NODE_REGION``) and a flag overrides the queue size.
What the node then advertises in its signed capacity record, read back from the DHT
by a client in another process, shows each setting took effect at its precedence:
price from the file, region from the environment, queue capacity from the flag.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from meshproc import ENV, TestnetProcess, mesh_cli, run_json_script, start_node_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PEERS_SCRIPT = """
import json, sys
import trio
from mesh.client.async_client import AsyncClient

async def main():
    async with AsyncClient.connect(bootstrap=sys.argv[1]) as client:
        views = await client.peers(timeout=20)
    print(json.dumps({
        v.peer_id: {"region": v.record.region, "price_micro": v.record.price_micro,
                    "queue_capacity": v.record.queue_capacity, "models": list(v.record.model_names)}
        for v in views
    }))

trio.run(main)
"""


def test_mesh_node_takes_its_settings_from_a_config_file(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    made = mesh_cli("keygen", "--out", str(etc / "keys" / "node.key"))
    assert made.returncode == 0, made.stderr
    peer_id = made.stdout.strip()
    (etc / "boot.txt").write_text(shared_testnet.bootstrap.read_text())
    config = etc / "node.toml"
    config.write_text(
        """
        key = "keys/node.key"           # relative: to this file's folder
        listen = ["/ip4/127.0.0.1/tcp/0"]
        bootstrap = "boot.txt"
        models = "tiny-mlp"
        device = "cpu"
        threads = 1
        data-dir = "data"
        region = "file-region"          # overridden by MESH_NODE_REGION
        price-micro = 42
        max_queue = 7                   # overridden by --max-queue
        """
    )

    node = start_node_process(
        [sys.executable, "-m", "mesh", "node", "--config", str(config), "--max-queue", "5"],
        env={**ENV, "MESH_NODE_REGION": "env-region"},
    )
    try:
        assert node.peer_id == peer_id  # the key the file names
        assert node.models == "tiny-mlp"
        assert node.addrs and node.addrs[0].startswith("/ip4/127.0.0.1/tcp/")

        records = run_json_script(PEERS_SCRIPT, str(shared_testnet.bootstrap))
        assert records[peer_id] == {
            "region": "env-region",  # environment over file
            "price_micro": 42,  # file over default
            "queue_capacity": 5,  # flag over file
            "models": ["tiny-mlp"],
        }
        # The CLI shows the same record.
        peers = mesh_cli("peers", "--bootstrap", str(shared_testnet.bootstrap), "--json")
        assert peers.returncode == 0, peers.stderr
        rows = {row["peer_id"]: row for row in json.loads(peers.stdout)}
        assert rows[peer_id]["region"] == "env-region"

        assert node.stop(signal.SIGTERM) == 0
        assert (etc / "data").is_dir()  # data-dir, relative to the file's folder
    finally:
        node.kill()


def test_mesh_node_refuses_a_config_file_with_an_unknown_key(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('models = "tiny-mlp"\nmodles = "tiny-gpt"\n')
    done = mesh_cli("node", "--config", str(config))
    assert done.returncode == 2  # as for a bad flag
    assert f"mesh node: error: config file {config}: unknown key 'modles'" in done.stderr
