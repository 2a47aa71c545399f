"""The operator's view of a real node: metrics, health, status, receipts, departure, reachability.

Each test starts ``mesh node`` by hand (its own process, joined to the shared
testnet), drives it with the ``mesh`` CLI or a client script in other processes,
and reads what the node says about itself over HTTP (``/metrics``, ``/healthz``,
``/status``, found through ``DATA_DIR/status.url``).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from meshproc import (
    ENV,
    ROW,
    NodeProcess,
    TestnetProcess,
    mesh_cli,
    start_node_process,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def start_node(
    testnet: TestnetProcess, work: Path, *extra: str, name: str = "op"
) -> tuple[NodeProcess, Path]:
    key = work / f"{name}.key"
    made = mesh_cli("keygen", "--out", str(key))
    assert made.returncode == 0, made.stderr
    data = work / f"{name}-data"
    node = start_node_process(
        [sys.executable, "-m", "mesh", "node", "--key", str(key),
         "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", str(testnet.bootstrap),
         "--models", "tiny-mlp", "--device", "cpu", "--threads", "1",
         "--data-dir", str(data), *extra],
    )  # fmt: skip
    return node, data


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(\{{(.*)\}})? (\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match is None:
            continue
        got = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if got == want:
            return float(match.group(3))
    return 0.0


def run_task(
    testnet: TestnetProcess, peer_id: str, rows: list[list[float]]
) -> subprocess.CompletedProcess[str]:
    return mesh_cli(
        "run", "tiny-mlp", "--bootstrap", str(testnet.bootstrap), "--target", peer_id,
        "--input", json.dumps({"x": rows}), "--json", "--timeout", "30",
    )  # fmt: skip


def test_metrics_health_status_and_receipts_follow_real_tasks(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    node, data = start_node(shared_testnet, tmp_path, "--price-micro", "250")
    try:
        url = (data / "status.url").read_text().strip()
        assert url.startswith("http://127.0.0.1:")
        status, body = get(f"{url}/healthz")
        assert status == 200 and json.loads(body)["ready"] is True

        for _ in range(2):
            done = run_task(shared_testnet, node.peer_id, [ROW])
            assert done.returncode == 0, done.stderr
        bad = run_task(shared_testnet, node.peer_id, [ROW[:5]])  # wrong width: invalid input
        assert bad.returncode == 1 and "shape" in bad.stderr, bad.stderr

        status, text = get(f"{url}/metrics")
        assert status == 200
        assert metric(text, "mesh_tasks_total", model="tiny-mlp", code="ok") == 2
        # The client checks inputs against the manifest before sending (issue 10):
        # the wrong width never reached the node.
        assert metric(text, "mesh_tasks_total", model="tiny-mlp", code="invalid-input") == 0
        assert metric(text, "mesh_receipts_issued_total") == 2
        assert metric(text, "mesh_task_latency_seconds_count", model="tiny-mlp") == 2
        assert metric(text, "mesh_task_compute_seconds_count", model="tiny-mlp") == 2
        assert metric(text, "mesh_batch_size_count", model="tiny-mlp") == 2
        assert metric(text, "mesh_task_bytes_total", direction="in") > 0
        assert metric(text, "mesh_dht_operations_total", op="put_record", outcome="ok") >= 1
        assert metric(text, "mesh_connected_peers") >= 1
        assert metric(text, "mesh_queue_capacity") == 64

        shown = mesh_cli("status", "--data-dir", str(data))
        assert shown.returncode == 0, shown.stderr
        assert f"node {node.peer_id}: ready" in shown.stdout
        assert "ok 2" in shown.stdout and "invalid-input" not in shown.stdout
        doc = json.loads(mesh_cli("status", "--url", url, "--json").stdout)
        assert doc["answered"] == {"ok": 2}  # the bad task never left its client

        # The ledger: what the node issued, priced at the price in force.
        ledger = mesh_cli("receipts", "--data-dir", str(data), "--json")
        assert ledger.returncode == 0, ledger.stderr
        totals = json.loads(ledger.stdout)
        assert totals["worker"] == node.peer_id and totals["chain"] == "verified"
        assert totals["total"]["tasks"] == 2 == metric(text, "mesh_receipts_issued_total")
        assert totals["total"]["earned_micro"] == 2 * 250
        assert list(totals["by_model"]) == ["tiny-mlp"]
        assert node.stop(signal.SIGTERM) == 0
        assert not (data / "status.url").exists()  # removed at exit

        inspected = mesh_cli("inspect", str(data / "receipts.log"))
        assert inspected.returncode == 0, inspected.stderr
        assert json.loads(inspected.stdout)["records"] == 2

        log = data / "receipts.log"
        raw = bytearray(log.read_bytes())
        raw[len(raw) // 2] ^= 0x01  # one bit inside the records
        tampered = tmp_path / "tampered.log"
        tampered.write_bytes(bytes(raw))
        refused = mesh_cli("receipts", str(tampered))
        assert refused.returncode == 1
        assert "receipt log" in refused.stderr and "record" in refused.stderr
    finally:
        node.kill()


CLIENT_WATCH = """
import json, sys, time
import trio
from mesh.client.async_client import AsyncClient
from mesh.client.models import resolve_model

peer = sys.argv[2]

async def main():
    async with AsyncClient.connect(bootstrap=sys.argv[1]) as client:
        root = resolve_model("tiny-mlp")
        while True:  # until the node is in the view (peers and selection)
            views = {v.peer_id for v in await client.peers(timeout=10)}
            chosen = {c.peer.peer_id for c in await client._discovery.candidates(root, timeout=10)}
            if peer in views and peer in chosen:
                break
            await trio.sleep(0.2)
        print(json.dumps({"seen": time.time()}), flush=True)
        while True:  # until it left both
            views = {v.peer_id for v in await client.peers(timeout=10)}
            chosen = {c.peer.peer_id for c in await client._discovery.candidates(root, timeout=10)}
            if peer not in views and peer not in chosen:
                print(json.dumps({"gone": time.time()}), flush=True)
                return
            await trio.sleep(0.1)

trio.run(main)
"""


def test_a_departing_node_leaves_a_live_clients_view_within_5_s(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    node, _ = start_node(shared_testnet, tmp_path, name="leaver")
    watcher = subprocess.Popen(
        [sys.executable, "-c", CLIENT_WATCH, str(shared_testnet.bootstrap), node.peer_id],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert watcher.stdout is not None
        line = watcher.stdout.readline()
        assert "seen" in line, watcher.stderr.read() if watcher.poll() is not None else line
        stopped_at = time.time()
        node.proc.send_signal(signal.SIGTERM)
        line = watcher.stdout.readline()
        assert "gone" in line, watcher.stderr.read()[-3000:]
        left_after = json.loads(line)["gone"] - stopped_at
        print(f"departure seen by a live client after {left_after:.2f} s")
        assert left_after <= 5.0
        assert watcher.wait(timeout=30) == 0
        assert node.proc.wait(timeout=60) == 0
        # A fresh `mesh peers` does not list it either (the DHT holds the draining record).
        peers = mesh_cli("peers", "--bootstrap", str(shared_testnet.bootstrap), "--json")
        assert peers.returncode == 0, peers.stderr
        assert node.peer_id not in {row["peer_id"] for row in json.loads(peers.stdout)}
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        node.kill()


def closed_port() -> int:
    with socket.socket() as sock:  # bound then closed: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_self_check_reports_an_unreachable_announced_address(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    port = closed_port()
    announced = f"/ip4/127.0.0.1/tcp/{port}"
    node, data = start_node(shared_testnet, tmp_path, "--announce", announced, name="hidden")
    try:
        assert node.addrs == [f"{announced}/p2p/{node.peer_id}"]  # the ready line says it
        line = node.err.wait_for(lambda text: "reachability:" in text, timeout=60)
        assert "NOT reachable" in line, line
        assert f"TCP port {port}" in line and "--announce" in line
        doc = json.loads(mesh_cli("status", "--data-dir", str(data), "--json").stdout)
        verdict = doc["reachability"]["addrs"][0]
        assert doc["reachability"]["status"] == "unreachable"
        assert verdict["addr"] == announced and verdict["tried"] >= 1 and verdict["reached"] == 0
        shown = mesh_cli("status", "--data-dir", str(data))
        assert "unreachable" in shown.stdout and f"TCP port {port}" in shown.stdout
    finally:
        node.kill()


def test_the_self_check_reports_a_reachable_node(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    node, data = start_node(shared_testnet, tmp_path, name="open")
    try:
        line = node.err.wait_for(lambda text: "reachability:" in text, timeout=60)
        assert "reachable (dialled back by" in line and "NOT" not in line, line
        doc = json.loads(mesh_cli("status", "--data-dir", str(data), "--json").stdout)
        assert doc["reachability"]["status"] == "reachable"
    finally:
        node.kill()
