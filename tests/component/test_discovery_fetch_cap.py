"""A cold lookup fetches a bounded number of capacity records, whatever the mesh's size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from meshfakes import ROOT_A, FakeRunner, open_client, start_node

from mesh.client.async_client import AsyncClient
from mesh.client.discovery import MAX_RECORD_FETCHES
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

NODES = 8


def _count_record_gets(client: AsyncClient) -> list[str]:
    calls: list[str] = []
    real = client._network.get_record

    async def counting(key: str, *, timeout: float) -> Any:  # noqa: ASYNC109
        calls.append(key)
        return await real(key, timeout=timeout)

    client._network.get_record = counting  # type: ignore[method-assign]
    return calls


async def test_cold_lookup_fetches_at_most_the_cap_and_keeps_every_candidate(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    assert NODES > MAX_RECORD_FETCHES
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        nodes = [await start_node(nursery, hub, i, FakeRunner(), tmp_path) for i in range(NODES)]
        client: AsyncClient = await nursery.start(open_client, hub, 99)
        calls = _count_record_gets(client)
        known = sum(client._discovery.record(n.peer_id) is not None for n in nodes)
        found = await client._discovery.candidates(ROOT_A, timeout=5)
        assert {c.peer.peer_id for c in found} == {n.peer_id for n in nodes}
        assert len(calls) == min(MAX_RECORD_FETCHES, NODES - known)
        assert sum(c.record is not None for c in found) == known + len(calls)
        # Asked for all, every record is there.
        found = await client._discovery.candidates(ROOT_A, timeout=5, max_fetches=None)
        assert all(c.record is not None for c in found)
        # ...and a task still runs.
        result = await client.run(ROOT_A, {"x": ["a"]}, timeout=10)
        assert result.worker in {n.peer_id for n in nodes}
        nursery.cancel_scope.cancel()
