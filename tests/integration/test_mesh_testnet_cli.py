"""``mesh testnet`` itself (ten nodes ready = findable; Ctrl-C stops them all) and ``mesh demo``.

The ``ready`` line must mean what it says: right after it, a client in another
process finds every node with a valid capacity record. SIGINT (what Ctrl-C
sends) must stop every node process and exit 0. SIGTERM is covered at the end
of ``test_mesh_faults.py``, on a testnet that lost a node and had one frozen.
The time to ready is printed (``-s``), never asserted. ``mesh demo``, the
README's main job, must exit 0 with every receipt verified.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from meshproc import mesh_cli, pid_gone, run_json_script, start_testnet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FINDABLE_SCRIPT = """
import json, sys
import trio
from mesh.client.async_client import AsyncClient
from mesh.client.models import resolve_model

async def main():
    async with AsyncClient.connect(bootstrap=sys.argv[1]) as client:
        found = await client._discovery.candidates(
            resolve_model("tiny-mlp"), timeout=10, max_fetches=None
        )
    print(json.dumps({"findable": [c.peer.peer_id for c in found if c.record is not None]}))

trio.run(main)
"""


def test_ten_node_testnet_is_findable_when_ready_and_stops_on_sigint(tmp_path: Path) -> None:
    net = start_testnet(tmp_path, nodes=10)
    try:
        print(
            f"10-node testnet: ready line {net.wall_ready_s:.1f} s after launch "
            f"(launcher's own count {net.reported_ready_s:.1f} s)"
        )
        assert len(net.nodes) == 10
        assert len({n.pid for n in net.nodes}) == 10
        assert all(not pid_gone(n.pid) for n in net.nodes)

        # "ready" means findable: a new client process finds every node as a
        # provider of the model, each with a valid capacity record.
        doc = run_json_script(FINDABLE_SCRIPT, str(net.bootstrap))
        assert set(doc["findable"]) == {n.peer_id for n in net.nodes}

        code = net.stop(signal.SIGINT, group=True)  # Ctrl-C in its terminal
        assert code == 0, net.log.read_text()[-3000:]
        lines = net.out.rest(timeout=10)
        assert any(line.startswith("signal 2") for line in lines), lines
        assert lines[-1] == "stopped"
        assert [n.pid for n in net.nodes if not pid_gone(n.pid)] == []
    finally:
        net.kill_everything()


def test_mesh_demo_runs_the_main_job_and_verifies_every_receipt(tmp_path: Path) -> None:
    done = mesh_cli("demo", timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "done"
    assert any(line.startswith("tiny-mlp: classes") for line in lines)
    assert any(line.startswith("tiny-gpt") for line in lines)
    receipts = [line for line in lines if line.strip().startswith("receipt seq=")]
    assert len(receipts) == 2 and all(line.endswith(": verified") for line in receipts)
    assert any(line.startswith("all receipts verified") for line in lines)
