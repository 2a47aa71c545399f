"""Capacity records and load gossip: forged, foreign or expired adverts are not accepted."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from meshfakes import MODELS, ROOT_A, FakeRunner, identity, open_client, start_node, wall

from mesh.core import canonical
from mesh.core.capacity import CAPACITY_NAMESPACE, capacity_key, capacity_validator
from mesh.core.envelope import sign_message
from mesh.core.messages import CapacityRecord
from mesh.errors import BadSignature, Expired
from mesh.net.interface import LOAD_TOPIC
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component


def _record(n: int, now_ms: int, *, ttl_ms: int = 60_000, queue_depth: int = 0) -> CapacityRecord:
    return CapacityRecord(
        peer=identity(n).public_key,
        addrs=(),
        models=tuple(MODELS),
        model_names=tuple(MODELS.values()),
        device="cpu",
        memory_free_mb=100,
        queue_depth=queue_depth,
        queue_capacity=8,
        throughput_milli=0,
        price_micro=0,
        region="test",
        created_ms=now_ms,
        expires_ms=now_ms + ttl_ms,
    )


async def test_node_publishes_a_record_that_clients_accept(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path, region="eu")
        client = await nursery.start(open_client, hub, 40)
        views = await client.peers()
        assert [v.peer_id for v in views] == [node.peer_id]
        assert views[0].record.models == (ROOT_A,) and views[0].record.region == "eu"
        # Records are refreshed each period and stay valid in between.
        await trio.sleep(node.config.capacity_refresh_s * 2.5)
        assert node.status().adverts_published >= 3
        assert await client._discovery.fetch_record(node.peer_id, timeout=1) is not None
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("case", ["bad-signature", "someone-else", "expired", "too-long"])
async def test_forged_record_rejected_on_put_and_get(
    case: str, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    now = wall()
    victim, attacker = identity(1), identity(2)
    async with hub.join(attacker.peer_id) as evil, hub.join(identity(3).peer_id) as honest:
        for net in (evil, honest):
            net.set_record_validator(CAPACITY_NAMESPACE, capacity_validator(wall()))
        key = capacity_key(victim.peer_id)
        if case == "bad-signature":
            signed = sign_message(victim, _record(1, now()))
            envelope = signed.to_wire()
            envelope["sig"] = bytes(64)
            value = canonical.encode(envelope)
            error: type[Exception] = BadSignature
        elif case == "someone-else":
            # A valid record of the attacker, stored under the victim's key.
            value = sign_message(attacker, _record(2, now())).envelope
            error = BadSignature
        elif case == "expired":
            value = sign_message(victim, _record(1, now() - 120_000)).envelope
            error = Expired
        else:
            value = sign_message(victim, _record(1, now(), ttl_ms=24 * 3600_000)).envelope
            error = Expired
        with pytest.raises(error):
            await evil.put_record(key, value, timeout=1)
        assert await honest.get_record(key, timeout=1) is None
        # A peer storing it anyway (no validator): readers still drop it on get.
        evil.inject_record(key, value)
        assert await honest.get_record(key, timeout=1) is None


async def test_record_expires_for_readers_on_a_fake_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()
    now = wall()
    async with hub.join(identity(1).peer_id) as owner, hub.join(identity(3).peer_id) as reader:
        for net in (owner, reader):
            net.set_record_validator(CAPACITY_NAMESPACE, capacity_validator(wall()))
        key = capacity_key(identity(1).peer_id)
        await owner.put_record(
            key, sign_message(identity(1), _record(1, now())).envelope, timeout=1
        )
        assert await reader.get_record(key, timeout=1) is not None
        await trio.sleep(61)
        assert await reader.get_record(key, timeout=1) is None


async def test_load_gossip_updates_clients_and_forged_gossip_is_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    now = wall()
    async with trio.open_nursery() as nursery:
        client = await nursery.start(open_client, hub, 40)
        async with hub.join(identity(2).peer_id) as evil:
            await trio.testing.wait_all_tasks_blocked()
            # Peer 1's record with peer 2's key in its body, signed by peer 2 over
            # the victim's body: the signature cannot check.
            victim = sign_message(identity(1), _record(1, now()))
            forged = canonical.encode({**victim.to_wire(), "sig": identity(2).sign(victim.body)})
            expired = sign_message(identity(1), _record(1, now() - 120_000))
            for bad in (b"garbage", forged, expired.envelope):
                await evil.publish(LOAD_TOPIC, bad, timeout=1)
            await trio.testing.wait_all_tasks_blocked()
            assert client._discovery.record(identity(1).peer_id) is None
            assert client._discovery.rejected == 3
            # A genuine record is accepted whoever relays it.
            honest = sign_message(identity(2), _record(2, now(), queue_depth=3))
            await evil.publish(LOAD_TOPIC, honest.envelope, timeout=1)
            await trio.testing.wait_all_tasks_blocked()
            held = client._discovery.record(identity(2).peer_id)
            assert held is not None and held.queue_depth == 3
            stale = replace(_record(2, now() - 1000), queue_depth=7)
            await evil.publish(LOAD_TOPIC, sign_message(identity(2), stale).envelope, timeout=1)
            await trio.testing.wait_all_tasks_blocked()
            held = client._discovery.record(identity(2).peer_id)
            assert held is not None and held.queue_depth == 3  # older record ignored
        nursery.cancel_scope.cancel()


async def test_node_gossips_load_changes_to_clients(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    gate = trio.Event()
    async with trio.open_nursery() as nursery:
        client = await nursery.start(open_client, hub, 40)
        node = await start_node(nursery, hub, 1, FakeRunner(gate=gate), tmp_path)
        await trio.testing.wait_all_tasks_blocked()  # its DHT adverts go out in the background
        assert await client._discovery.fetch_record(node.peer_id, timeout=1) is not None
        held = client._discovery.record(node.peer_id)
        assert held is not None and held.queue_depth == 0
        for _ in range(3):
            task = client.build_task(ROOT_A, {"t": ["x"]})
            nursery.start_soon(
                functools.partial(client.run_task, task, {"t": ["x"]}, deadline=1000.0)
            )
        await trio.testing.wait_all_tasks_blocked()
        assert node.status().in_flight == 3
        await trio.sleep(node.config.load_gossip_s + 0.1)
        held = client._discovery.record(node.peer_id)
        assert held is not None and held.queue_depth == 3  # from gossip, not the DHT
        gate.set()
        nursery.cancel_scope.cancel()


async def test_adverts_are_repeated_early_then_every_period(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path, capacity_refresh_s=60)
        start = trio.current_time()
        counts = []
        for at in (0.5, 2.5, 7.5, 22.5, 82.5, 142.5):
            await trio.sleep_until(start + at)
            counts.append(node.status().adverts_published)
        # Once at start, then after 2, 5 and 15 s (a lone first node's records reach
        # peers that joined meanwhile), then every 60 s.
        assert counts == [1, 2, 3, 4, 5, 6]
        nursery.cancel_scope.cancel()
