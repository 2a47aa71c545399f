"""Discovery: one exchange round trip for a fresh client, the book for a warm one, the DHT
only for what the exchange misses, and Sybil providers without records never chosen.

Over the memory network with a latency model on a fake clock, so round trips are
exact virtual times.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import trio
from meshfakes import ROOT_A, FakeRunner, identity, inputs, open_client, start_node

from mesh.client.async_client import AsyncClient
from mesh.client.discovery import MAX_RECORD_FETCHES, RECORDLESS_RETRY_S
from mesh.net.interface import TASK_PROTOCOL
from mesh.net.memory import MemoryNetwork
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

ONE_WAY_S = 0.010  # each request and each answer travels 10 ms
DHT_S = 0.200  # one DHT walk: several round trips
CLIENT = 40


def _hub() -> MemoryHub:
    return MemoryHub(latency=lambda _a, _b: ONE_WAY_S, dht_delay=lambda _p: DHT_S)


def _count_dht(net: MemoryNetwork) -> dict[str, list[Any]]:
    """Wrap a network's DHT reads and record each call."""
    calls: dict[str, list[Any]] = {"find_providers": [], "get_record": []}
    find, get = net.find_providers, net.get_record

    async def counting_find(key: bytes, *, count: int, timeout: float) -> Any:  # noqa: ASYNC109
        calls["find_providers"].append(key)
        return await find(key, count=count, timeout=timeout)

    async def counting_get(key: str, *, timeout: float) -> Any:  # noqa: ASYNC109
        calls["get_record"].append(key)
        return await get(key, timeout=timeout)

    net.find_providers = counting_find  # type: ignore[method-assign]
    net.get_record = counting_get  # type: ignore[method-assign]
    return calls


async def _nodes(nursery: trio.Nursery, hub: MemoryHub, tmp_path: Path, count: int) -> list[Any]:
    """Node 1 first, then the others joining through it (each pushes its record there)."""
    first = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
    rest = [
        await start_node(nursery, hub, n, FakeRunner(), tmp_path, bootstrap=(first.peer_id,))
        for n in range(2, count + 1)
    ]
    return [first, *rest]


async def test_a_fresh_client_chooses_a_worker_after_one_round_trip(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        nodes = await _nodes(nursery, hub, tmp_path, 5)
        client: AsyncClient = await nursery.start(
            functools.partial(open_client, hub, CLIENT, bootstrap=(nodes[0].peer_id,))
        )
        calls = _count_dht(client._network)  # type: ignore[arg-type]
        started = trio.current_time()
        found = await client._discovery.candidates(ROOT_A, timeout=5)
        # One request and its answer: 2 x 10 ms of virtual time, no DHT.
        assert trio.current_time() - started == pytest.approx(2 * ONE_WAY_S)
        assert {c.peer.peer_id for c in found} == {n.peer_id for n in nodes}
        assert all(c.record is not None and c.peer.addrs for c in found)
        assert calls == {"find_providers": [], "get_record": []}
        result = await client.run(ROOT_A, inputs(), timeout=10)
        assert result.worker in {n.peer_id for n in nodes}
        assert calls == {"find_providers": [], "get_record": []}
        nursery.cancel_scope.cancel()


async def test_a_warm_client_never_waits_on_the_network_to_choose(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        nodes = await _nodes(nursery, hub, tmp_path, 3)
        client: AsyncClient = await nursery.start(
            functools.partial(open_client, hub, CLIENT, bootstrap=(nodes[0].peer_id,))
        )
        calls = _count_dht(client._network)  # type: ignore[arg-type]
        await client._discovery.candidates(ROOT_A, timeout=5)
        rounds = client._discovery.stats.exchange_rounds
        for _ in range(20):
            started = trio.current_time()
            found = await client._discovery.candidates(ROOT_A, timeout=5)
            assert trio.current_time() == started  # no wait at all
            assert len(found) == 3
        assert client._discovery.stats.exchange_rounds == rounds
        assert client._discovery.stats.from_book == 20
        assert calls == {"find_providers": [], "get_record": []}
        nursery.cancel_scope.cancel()


async def test_the_dht_fills_in_what_the_exchange_misses(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        # The client's only bootstrap peer is another client that knows nobody.
        lonely: AsyncClient = await nursery.start(open_client, hub, CLIENT + 1)
        client: AsyncClient = await nursery.start(
            functools.partial(open_client, hub, CLIENT, bootstrap=(lonely._network.peer_id,))
        )
        calls = _count_dht(client._network)  # type: ignore[arg-type]
        found = await client._discovery.candidates(ROOT_A, timeout=5)
        assert [c.peer.peer_id for c in found] == [node.peer_id]
        assert len(calls["find_providers"]) == 1 and len(calls["get_record"]) == 1
        nursery.cancel_scope.cancel()


async def _sybil(hub: MemoryHub, n: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A PeerID announcing ROOT_A with no capacity record, taking requests and never answering."""
    async with hub.join(identity(100 + n).peer_id) as net:
        await net.provide(ROOT_A, timeout=1)
        hub.drop(net.peer_id)
        task_status.started(net.peer_id)
        await trio.sleep_forever()


async def test_sybil_providers_without_records_are_never_chosen_nor_fetched_per_task(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        honest = [await start_node(nursery, hub, n, FakeRunner(), tmp_path) for n in (1, 2, 3)]
        sybils = [await nursery.start(_sybil, hub, n) for n in range(17)]
        lonely: AsyncClient = await nursery.start(open_client, hub, CLIENT + 1)
        # This client can learn nothing by exchange: the DHT is its only source,
        # and 17 of its 20 providers are Sybils.
        client: AsyncClient = await nursery.start(
            functools.partial(open_client, hub, CLIENT, bootstrap=(lonely._network.peer_id,))
        )
        calls = _count_dht(client._network)  # type: ignore[arg-type]
        first = await client.run(ROOT_A, inputs(), timeout=30)
        assert first.worker in {n.peer_id for n in honest}
        lookups, fetches = len(calls["find_providers"]), len(calls["get_record"])
        # One DHT lookup: record fetches in growing batches until one gives a
        # worker, each provider at most once.
        assert lookups == 1
        assert MAX_RECORD_FETCHES <= fetches <= len(sybils) + len(honest)
        assert len(set(calls["get_record"])) == fetches
        for _ in range(20):
            result = await client.run(ROOT_A, inputs(), timeout=30)
            assert result.attempts == 1 and result.worker in {n.peer_id for n in honest}
        # No task waited on the DHT once a recorded candidate was known.
        assert (len(calls["find_providers"]), len(calls["get_record"])) == (lookups, fetches)
        assert all(hub.served_by_protocol[s, TASK_PROTOCOL] == 0 for s in sybils)
        # Each record-less provider was looked up at most once.
        fetched = [key.rsplit("/", 1)[1] for key in calls["get_record"]]
        assert all(fetched.count(s) <= 1 for s in sybils)
        # ... and not again before RECORDLESS_RETRY_S, even when the DHT is asked afresh.
        await client._discovery.candidates(ROOT_A, timeout=5, fresh=True)
        refetched = [key.rsplit("/", 1)[1] for key in calls["get_record"][fetches:]]
        assert not set(refetched) & set(fetched) - {n.peer_id for n in honest}
        await trio.sleep(RECORDLESS_RETRY_S)
        await client._discovery.candidates(ROOT_A, timeout=5, fresh=True)
        assert len(calls["get_record"]) > fetches  # the back-off ran out: asked again
        nursery.cancel_scope.cancel()


async def test_a_client_with_a_live_bootstrap_never_sees_the_sybils(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        nodes = await _nodes(nursery, hub, tmp_path, 3)
        for n in range(17):
            await nursery.start(_sybil, hub, n)
        client: AsyncClient = await nursery.start(
            functools.partial(open_client, hub, CLIENT, bootstrap=(nodes[0].peer_id,))
        )
        calls = _count_dht(client._network)  # type: ignore[arg-type]
        for _ in range(10):
            result = await client.run(ROOT_A, inputs(), timeout=30)
            assert result.attempts == 1
        assert calls == {"find_providers": [], "get_record": []}
        nursery.cancel_scope.cancel()
