"""The blocking Client: a trio loop in a background thread, over the memory network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from meshfakes import ROOT_A, ROOT_B, FakeRunner, identity, inputs, start_node, wall

from mesh.client.async_client import AsyncClient
from mesh.client.sync_client import Client
from mesh.errors import DeadlineExceeded, MeshError, NoPeersAvailable
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component


def _factory(tmp_path: Path, nodes: int):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def factory() -> AsyncIterator[AsyncClient]:
        hub = MemoryHub()
        async with trio.open_nursery() as nursery:
            for n in range(1, nodes + 1):
                await start_node(nursery, hub, n, FakeRunner(compute_s=0.0), tmp_path)
            ident = identity(40)
            async with (
                hub.join(ident.peer_id) as net,
                AsyncClient(net, identity=ident, wall_clock=wall()) as client,
            ):
                yield client
            nursery.cancel_scope.cancel()

    return factory


def test_blocking_run_map_peers_and_errors(tmp_path: Path) -> None:
    with Client(factory=_factory(tmp_path, 2)) as client:
        result = client.run(ROOT_A, inputs(), seed=1)
        assert result.outputs["out_x"] == inputs()["x"]
        assert result.task.message.params == {"seed": 1}
        results = client.map(ROOT_A, [inputs(float(i)) for i in range(6)], concurrency=3)
        assert [r.outputs["out_x"] for r in results] == [inputs(float(i))["x"] for i in range(6)]
        assert len(client.peers()) == 2
        with pytest.raises(DeadlineExceeded, match="no provider"):
            client.run(ROOT_B, inputs(), timeout=0.3)
    with pytest.raises(MeshError, match="closed"):
        client.run(ROOT_A, inputs())


def test_a_failing_start_raises_in_the_caller(tmp_path: Path) -> None:
    @asynccontextmanager
    async def broken() -> AsyncIterator[AsyncClient]:
        raise NoPeersAvailable("none of 1 bootstrap peers answered")
        yield  # type: ignore[unreachable]

    with pytest.raises(NoPeersAvailable, match="bootstrap"):
        Client(factory=broken)
