"""DHT providers and records, and gossipsub, across three real libp2p peers."""

from __future__ import annotations

import pytest
import trio
from netsupport import networks

from mesh.core.capacity import CAPACITY_NAMESPACE
from mesh.core.identity import Identity
from mesh.errors import BadSignature, DeadlineExceeded, Expired, MeshError, TooLarge
from mesh.net.interface import LOAD_TOPIC
from mesh.net.libp2p_net import Libp2pNetwork

pytestmark = pytest.mark.integration

ROOT_A = bytes.fromhex("ff" * 32)  # starts with 'f': a CID parser would misread its hex
ROOT_B = bytes(range(32))


async def test_provide_and_find_providers_across_three_peers() -> None:
    async with networks(3) as (boot, worker, client):
        await worker.provide(ROOT_A, timeout=5)
        found = await client.find_providers(ROOT_A, count=5, timeout=5)
        assert [p.peer_id for p in found] == [worker.peer_id]
        assert found[0].addrs and all("/p2p/" not in a for a in found[0].addrs)

        # A second provider appears later: the client must not be stuck on its
        # cached answer (the library would serve the first result for 48 h).
        await boot.provide(ROOT_A, timeout=5)
        found = await client.find_providers(ROOT_A, count=5, timeout=5)
        assert sorted(p.peer_id for p in found) == sorted([worker.peer_id, boot.peer_id])

        # Nobody serves ROOT_B.
        assert await client.find_providers(ROOT_B, count=5, timeout=5) == []

        # A provider the health list marks dead is left out; ourselves too.
        client.mark_unhealthy(boot.peer_id)
        found = await client.find_providers(ROOT_A, count=5, timeout=5)
        assert [p.peer_id for p in found] == [worker.peer_id]
        assert worker.peer_id not in [
            p.peer_id for p in await worker.find_providers(ROOT_A, count=5, timeout=5)
        ]


def capacity_validator(key: str, value: bytes) -> None:
    """Stands in for the signed capacity check: 'ok:<n>' valid, 'old:' expired."""
    if value.startswith(b"old:"):
        raise Expired("record expired")
    if not value.startswith(b"ok:"):
        raise BadSignature("forged record")


def newest(values: list[bytes]) -> int:
    return max(range(len(values)), key=lambda i: int(values[i].split(b":")[1]))


async def test_records_are_validated_on_put_and_on_get() -> None:
    async with networks(3) as nets:
        boot, owner, reader = nets
        for net in nets:
            net.set_record_validator(CAPACITY_NAMESPACE, capacity_validator, newest)
        key = f"/{CAPACITY_NAMESPACE}/{owner.peer_id}"

        with pytest.raises(BadSignature):
            await owner.put_record(key, b"forged", timeout=5)
        assert await reader.get_record(key, timeout=5) is None

        await owner.put_record(key, b"ok:1", timeout=5)
        assert await reader.get_record(key, timeout=5) == b"ok:1"
        await owner.put_record(key, b"ok:2", timeout=5)
        # reader cached ok:1 locally; boot holds ok:2 now.
        assert await boot.get_record(key, timeout=5) == b"ok:2"
        with pytest.raises(Expired):  # the selector prefers the newer ok:2 held here
            await owner.put_record(key, b"ok:1", timeout=5)

        # A forged value pushed straight at a peer (skipping our put) is refused.
        dht = owner._dht
        key_bytes = key.encode()
        with trio.fail_after(5):
            await dht.value_store._store_at_peer(boot._dht.local_peer_id, key_bytes, b"forged:99")
        assert boot._dht.value_store.get(key_bytes).value == b"ok:2"

        # Namespaces nobody registered are refused too (strict validation).
        with trio.fail_after(5):
            await dht.value_store._store_at_peer(boot._dht.local_peer_id, b"/junk/x", b"v")
        assert boot._dht.value_store.get(b"/junk/x") is None

        # A stale copy in a local store does not hide the network's newer one.
        reader._dht.value_store.put(key_bytes, b"ok:1")
        assert await reader.get_record(key, timeout=5) == b"ok:2"
        assert reader._dht.value_store.get(key_bytes).value == b"ok:2"

        # A local copy better than the network's is kept and returned.
        owner._dht.value_store.put(key_bytes, b"ok:3")
        assert await owner.get_record(key, timeout=5) == b"ok:3"
        assert owner._dht.value_store.get(key_bytes).value == b"ok:3"

        # An expired local copy is never returned, nor kept.
        boot._dht.value_store.put(key_bytes, b"old:4")
        assert await boot.get_record(key, timeout=5) in (b"ok:2", b"ok:3")
        alone = b"/" + CAPACITY_NAMESPACE.encode() + b"/nobody-else"
        reader._dht.value_store.put(alone, b"old:5")
        assert await reader.get_record(alone.decode(), timeout=5) is None
        assert reader._dht.value_store.get(alone) is None


async def test_put_record_needs_a_validator() -> None:
    async with networks(1) as (net,):
        with pytest.raises(MeshError):
            await net.put_record("/unknown-ns/x", b"ok:1", timeout=2)


async def test_pubsub_delivers_to_every_subscriber() -> None:
    async with networks(3) as nets:
        channels = [await net.subscribe(LOAD_TOPIC) for net in nets]
        publisher = nets[1]
        got: dict[int, tuple[str, bytes]] = {}
        both = trio.Event()

        async def collect(index: int) -> None:
            async for sender, data in channels[index]:
                got[index] = (sender, data)
                if len(got) == 2:
                    both.set()
                return

        # Gossipsub meshes form on the 1 s heartbeat: publish until both others
        # heard one message (a retry loop on events, not a sleep).
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect, 0)
                nursery.start_soon(collect, 2)
                n = 0
                while not both.is_set():
                    n += 1
                    await publisher.publish(LOAD_TOPIC, b"load %d" % n, timeout=2)
                    with trio.move_on_after(0.25):
                        await both.wait()
        assert {i: s for i, (s, _) in got.items()} == {0: publisher.peer_id, 2: publisher.peer_id}
        assert all(data.startswith(b"load ") for _, data in got.values())

        with pytest.raises(TooLarge):
            await publisher.publish(LOAD_TOPIC, b"x" * (64 * 1024 + 1), timeout=2)


async def test_calls_on_a_lone_peer_do_not_hang() -> None:
    async with networks(1) as (net,):
        assert await net.find_providers(ROOT_B, count=3, timeout=2) == []
        net.set_record_validator(CAPACITY_NAMESPACE, capacity_validator)
        try:
            assert await net.get_record(f"/{CAPACITY_NAMESPACE}/{net.peer_id}", timeout=2) is None
        except DeadlineExceeded:
            pytest.fail("get_record on an empty DHT must answer None, not time out")


async def test_a_peer_out_of_backoff_goes_back_into_the_routing_table() -> None:
    async with networks(2) as (boot, client):
        assert [p.peer_id for p in client.known_peers()] == [boot.peer_id]
        client.mark_unhealthy(boot.peer_id)
        assert client.known_peers() == []
        assert client._dht.routing_table.size() == 0
        assert await client.restore_peers() == []  # still in its backoff window
        client._health.record_success(boot.peer_id)  # as when the backoff runs out
        assert await client.restore_peers() == [boot.peer_id]
        assert [p.peer_id for p in client.known_peers()] == [boot.peer_id]
        # ...and lookups go through it again.
        await boot.provide(ROOT_B, timeout=5)
        found = await client.find_providers(ROOT_B, count=2, timeout=5)
        assert [p.peer_id for p in found] == [boot.peer_id]


async def test_restoring_a_peer_the_peerstore_forgot_does_not_crash() -> None:
    # py-libp2p raises PeerStoreError for a forgotten peer; a benched peer that
    # is gone from the peerstore must be skipped, not take the node down.
    async with networks(1) as (net,):
        stranger = Identity.generate().peer_id
        net.mark_unhealthy(stranger)
        net._health.record_success(stranger)  # its backoff is over
        assert await net.restore_peers() == []
        assert stranger not in {p.peer_id for p in net.known_peers()}


async def test_a_burst_of_updates_from_many_peers_reaches_a_subscriber() -> None:
    # Many peers' load updates arriving at once all reach the reader (the
    # library's per-subscription queue of 32 is enlarged by mesh.net.pubsub;
    # each publisher stays under the library's outbound queue of 32 RPCs).
    async with networks(4) as nets:
        listener, publishers = nets[0], nets[1:]
        channel = await listener.subscribe(LOAD_TOPIC)
        for net in publishers:
            await net.subscribe(LOAD_TOPIC)
        with trio.fail_after(15):  # wait until every publisher reaches the listener
            pending = {net.peer_id for net in publishers}
            while pending:
                for net in publishers:
                    if net.peer_id in pending:
                        await net.publish(LOAD_TOPIC, b"hello", timeout=2)
                with trio.move_on_after(0.3):
                    while pending:
                        sender, _ = await channel.receive()
                        pending.discard(sender)
        sent: set[tuple[str, bytes]] = set()

        async def burst(net: Libp2pNetwork) -> None:
            for i in range(12):
                data = b"load %d" % i
                sent.add((net.peer_id, data))
                await net.publish(LOAD_TOPIC, data, timeout=2)

        async with trio.open_nursery() as nursery:
            for net in publishers:
                nursery.start_soon(burst, net)
        heard: set[tuple[str, bytes]] = set()
        with trio.fail_after(10):
            while heard != sent:
                sender, data = await channel.receive()
                if data.startswith(b"load "):
                    heard.add((sender, data))
        assert len(heard) == 36
