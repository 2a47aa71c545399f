"""Operator views of a node on the memory network: metrics, departure, the HTTP endpoint."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import trio
import trio.testing
from meshfakes import ROOT_A, FakeRunner, identity, inputs, open_client, serve_node, wall

from mesh.core.capacity import CAPACITY_NAMESPACE, capacity_key, capacity_validator, open_capacity
from mesh.node.metrics import render
from mesh.node.status_http import Health, Routes, serve_http
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


async def test_metrics_count_tasks_by_model_and_code(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        node = await nursery.start(serve_node, hub, 1, FakeRunner(), tmp_path)
        client = await nursery.start(open_client, hub, 50)
        for n in range(3):
            await client.run(ROOT_A, inputs(float(n)), timeout=10)
        with pytest.raises(Exception, match="not accepted"):
            await client.run(ROOT_A, {"bad": inputs()["x"]}, timeout=10)
        text = render(node.metrics).decode()
        assert sample(text, 'mesh_tasks_total{code="ok",model="model-a"}') == 3
        assert sample(text, 'mesh_tasks_total{code="invalid-input",model="model-a"}') == 1
        assert sample(text, "mesh_receipts_issued_total") == 3
        assert sample(text, 'mesh_batch_size_count{model="model-a"}') == 3
        assert sample(text, 'mesh_task_latency_seconds_count{model="model-a"}') == 4
        assert (
            sample(text, 'mesh_request_bytes_total{direction="in",protocol="/mesh/task/1.0.0"}') > 0
        )
        assert sample(text, 'mesh_dht_operations_total{op="put_record",outcome="ok"}') >= 1
        assert sample(text, "mesh_ready") == 1 and sample(text, "mesh_queue_depth") == 0
        nursery.cancel_scope.cancel()


async def test_a_draining_node_leaves_the_clients_view_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    stop = trio.Event()
    gate = trio.Event()
    runner = FakeRunner(gate=gate)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(
            functools.partial(serve_node, hub, 1, runner, tmp_path, stop=stop)
        )
        await nursery.start(serve_node, hub, 2, FakeRunner(), tmp_path)
        client = await nursery.start(open_client, hub, 50)
        assert node.peer_id in {v.peer_id for v in await client.peers(timeout=5)}
        # One task in flight on the leaving node keeps it draining for a while.
        nursery.start_soon(
            functools.partial(client.run, ROOT_A, inputs(), timeout=60, target=node.peer_id)
        )
        await runner.started.wait()
        started = trio.current_time()
        stop.set()
        for _ in range(100):  # polls the client's view (what a caller would do)
            if node.peer_id not in {v.peer_id for v in await client.peers(timeout=5)}:
                break
            await trio.sleep(0.05)
        assert trio.current_time() - started <= 5.0  # virtual time: gossip and the DHT
        assert node.status().draining and node.status().in_flight == 1
        found = await client._discovery.candidates(ROOT_A, timeout=5, fresh=True)
        assert node.peer_id not in {c.peer.peer_id for c in found}
        result = await client.run(ROOT_A, inputs(2.0), timeout=10)
        assert result.worker != node.peer_id and result.attempts == 1
        # The DHT holds the draining record: a client that was not watching sees it too.
        async with hub.join(identity(60).peer_id) as net:
            net.set_record_validator(CAPACITY_NAMESPACE, capacity_validator(wall()))
            record = await net.get_record(capacity_key(node.peer_id), timeout=5)
        assert record is not None
        assert open_capacity(record, peer_id=node.peer_id, now_ms=wall()()).message.draining
        gate.set()
        nursery.cancel_scope.cancel()


async def test_http_endpoint_routes(nursery: trio.Nursery) -> None:
    health = Health(True, "")

    routes = Routes(
        metrics=lambda: (b"mesh_up 1\n", "text/plain; version=0.0.4"),
        health=lambda: health,
        status=lambda: {"peer_id": "x"},
    )
    port = await nursery.start(serve_http, routes, "127.0.0.1", 0)

    async def get(request: bytes) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            data = b""
            try:
                while chunk := await stream.receive_some(65536):
                    data += chunk
            except trio.BrokenResourceError:
                pass  # reset: the server closed with our bytes unread
        return data

    assert (await get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")).endswith(b"mesh_up 1\n")
    ok = await get(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200") and json.loads(ok.split(b"\r\n\r\n")[1])["ready"]
    health = Health(False, "draining")
    assert (await get(b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 503")
    assert (await get(b"GET /healthz/live HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
    assert (await get(b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
    assert (await get(b"POST /status HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
    head = await get(b"HEAD /status HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    assert await get(b"garbage\r\n\r\n") == b""  # not HTTP: closed without a word
    assert await get(b"GET /" + b"x" * 20000 + b" HTTP/1.1\r\n\r\n") == b""  # too long
    nursery.cancel_scope.cancel()
