"""The record exchange (/mesh/records/1.0.0): what peers hand out is checked like any record.

Forged, expired and foreign records handed out by a peer are dropped; a peer
that hands out forgeries or garbage is counted against in the health list; a
node's bootstrap peers take its record by push; ``survey`` says whether the
bootstrap peers agree.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio
from meshfakes import (
    MODELS,
    ROOT_A,
    ROOT_B,
    FakeRunner,
    identity,
    inputs,
    open_client,
    serve_node,
    signed_task,
    start_node,
    wall,
)

from mesh.client.async_client import AsyncClient
from mesh.core import canonical
from mesh.core.envelope import sign_message
from mesh.core.exchange import RecordsAnswer, RecordsQuery
from mesh.core.messages import CapacityRecord
from mesh.core.record_book import RecordBook
from mesh.net.exchange import RecordExchange
from mesh.net.interface import RECORDS_PROTOCOL, Inbound, PeerAddr
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

CLIENT = 40


def _record(n: int, now_ms: int, *, ttl_ms: int = 60_000, models: tuple[bytes, ...] = ()) -> bytes:
    record = CapacityRecord(
        peer=identity(n).public_key,
        addrs=(f"/memory/{identity(n).peer_id}/p2p/{identity(n).peer_id}",),
        models=models or tuple(MODELS),
        model_names=tuple(f"m{i}" for i in range(len(models or MODELS))),
        device="cpu",
        memory_free_mb=0,
        queue_depth=0,
        queue_capacity=8,
        throughput_milli=0,
        price_micro=0,
        region="",
        created_ms=now_ms,
        expires_ms=now_ms + ttl_ms,
    )
    return sign_message(identity(n), record).envelope


def _forgeries(now_ms: int) -> dict[str, bytes]:
    """Records a lying peer hands out, each of which must be dropped."""
    victim = canonical.decode(_record(1, now_ms))
    return {
        # The victim's record with its signature zeroed.
        "forged": canonical.encode({**victim, "sig": bytes(64)}),
        # The victim's record body, signed by the attacker under its own key.
        "impostor": canonical.encode(
            {**victim, "key": identity(2).public_key, "sig": identity(2).sign(victim["body"])}
        ),
        # Another kind of signed envelope dressed as a record (a task).
        "foreign": signed_task(identity(2), inputs(), now_ms=now_ms).envelope,
        "garbage-inside": b"\x93\x01\x02\x03",
    }


async def _serve(hub: MemoryHub, n: int, answer: bytes, *, task_status: object) -> None:
    """A peer answering every records query with ``answer``."""
    async with hub.join(identity(n).peer_id) as net:

        async def handler(_inbound: Inbound) -> bytes:
            return answer

        net.set_request_handler(RECORDS_PROTOCOL, handler)
        task_status.started(net.peer_id)  # type: ignore[attr-defined]
        await trio.sleep_forever()


@pytest.mark.parametrize("kind", ["forged", "impostor", "foreign", "garbage-inside"])
async def test_forged_and_foreign_records_are_dropped_and_the_peer_counted_against(
    kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    now = wall()
    async with trio.open_nursery() as nursery:
        honest = _record(3, now())
        answer = RecordsAnswer(records=(_forgeries(now())[kind], honest)).encode()
        evil = await nursery.start(_serve, hub, 2, answer)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        got = await client._discovery.exchange.ask(PeerAddr(evil), timeout=1)
        assert [s.envelope for s in got.records] == [honest]  # the real record still counts
        assert got.rejected == 1 and got.error is not None
        assert client._discovery.record(identity(1).peer_id) is None
        assert client._network.consecutive_failures(evil) == 1
        assert not client._network.is_healthy(evil)
        nursery.cancel_scope.cancel()


async def test_expired_records_are_dropped_without_blame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()
    now = wall()
    async with trio.open_nursery() as nursery:
        stale = _record(1, now() - 120_000)
        evil = await nursery.start(_serve, hub, 2, RecordsAnswer(records=(stale,)).encode())
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        got = await client._discovery.exchange.ask(PeerAddr(evil), timeout=1)
        assert got.records == [] and got.rejected == 1 and got.error is None
        assert client._discovery.record(identity(1).peer_id) is None
        assert client._network.is_healthy(evil)  # it may have expired on its way
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("answer", [b"not msgpack", canonical.encode({"kind": "records"})])
async def test_a_garbage_answer_counts_against_the_peer(
    answer: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        evil = await nursery.start(_serve, hub, 2, answer)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        got = await client._discovery.exchange.ask(PeerAddr(evil), timeout=1)
        assert got.records == [] and got.error is not None
        assert not client._network.is_healthy(evil)
        nursery.cancel_scope.cancel()


async def test_a_pushed_record_is_kept_only_when_it_is_the_askers_own(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    now = wall()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        async with hub.join(identity(2).peer_id) as asker:
            target = PeerAddr(node.peer_id)
            # Someone else's valid record, pushed by peer 2: not taken.
            query = RecordsQuery(models=(), limit=10, own=_record(3, now()))
            await asker.request(target, RECORDS_PROTOCOL, query.encode(), timeout=1)
            assert node._exchange.book.get(identity(3).peer_id, now_ms=now()) is None
            # Its own record: taken, and handed to the next asker.
            query = RecordsQuery(models=(), limit=10, own=_record(2, now()))
            await asker.request(target, RECORDS_PROTOCOL, query.encode(), timeout=1)
            assert node._exchange.book.get(identity(2).peer_id, now_ms=now()) is not None
            client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
            got = await client._discovery.exchange.ask(target, timeout=1)
            held = {s.key for s in got.records}
            assert held == {identity(1).public_key, identity(2).public_key}
        nursery.cancel_scope.cancel()


async def test_answers_are_filtered_by_model_capped_and_leave_out_the_asker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()
    now = wall()
    async with hub.join(identity(1).peer_id) as server, hub.join(identity(5).peer_id) as asker:
        book = RecordBook()
        for n in (2, 3, 4):
            book.accept(_record(n, now(), models=(ROOT_A,)), now_ms=now())
        book.accept(_record(6, now(), models=(ROOT_B,)), now_ms=now())
        book.accept(_record(5, now(), models=(ROOT_A,)), now_ms=now())  # the asker's own
        RecordExchange(server, book, wall_clock=wall()).serve()
        mine = RecordExchange(asker, RecordBook(), wall_clock=wall())
        got = await mine.ask(PeerAddr(server.peer_id), models=(ROOT_A,), timeout=1)
        assert {s.key for s in got.records} == {identity(n).public_key for n in (2, 3, 4)}
        got = await mine.ask(PeerAddr(server.peer_id), models=(ROOT_B,), timeout=1)
        assert [s.key for s in got.records] == [identity(6).public_key]
        got = await mine.ask(PeerAddr(server.peer_id), limit=2, timeout=1)
        assert len(got.records) == 2
        # A query that is not one closes the stream unanswered.
        with pytest.raises(Exception, match=r"closed|unavailable|stream"):
            await asker.request(PeerAddr(server.peer_id), RECORDS_PROTOCOL, b"\x01", timeout=1)


async def test_a_client_survey_is_partial_until_the_bootstrap_peers_agree(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        one = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        two = await start_node(nursery, hub, 2, FakeRunner(), tmp_path, bootstrap=(one.peer_id,))
        client: AsyncClient = await nursery.start(
            functools.partial(open_client, hub, CLIENT, bootstrap=(one.peer_id, two.peer_id))
        )
        # Node 3 pushes its record to node 1 only; node 2 hears of it by gossip later.
        three = await start_node(nursery, hub, 3, FakeRunner(), tmp_path, bootstrap=(one.peer_id,))
        early = await client.peer_list(timeout=0.05)
        assert not early.complete and "disagree" in early.note
        assert {v.peer_id for v in early.peers} == {one.peer_id, two.peer_id, three.peer_id}
        # Gossip (every node re-gossips its record each refresh) brings them together.
        later = await client.peer_list(timeout=30)
        assert later.complete and later.answered == 2
        assert {v.peer_id for v in later.peers} == {one.peer_id, two.peer_id, three.peer_id}
        # A bootstrap peer that stops answering makes the view partial again.
        hub.kill(two.peer_id)
        gone = await client.peer_list(timeout=1)
        assert not gone.complete and gone.note == "1 of 2 bootstrap peers answered"
        nursery.cancel_scope.cancel()


async def test_a_departing_node_leaves_a_complete_view_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        one = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        two = await start_node(nursery, hub, 2, FakeRunner(), tmp_path, bootstrap=(one.peer_id,))
        boot = (one.peer_id, two.peer_id)
        stop = trio.Event()
        leaver = await nursery.start(
            functools.partial(serve_node, hub, 3, FakeRunner(), tmp_path, stop=stop, bootstrap=boot)
        )
        client: AsyncClient = await nursery.start(
            functools.partial(open_client, hub, CLIENT, bootstrap=boot)
        )
        before = await client.peer_list(timeout=5)
        assert before.complete and leaver.peer_id in {v.peer_id for v in before.peers}
        stop.set()  # it drains: its draining record goes to both bootstrap peers
        await trio.testing.wait_all_tasks_blocked()
        after = await client.peer_list(timeout=5)
        assert after.complete
        assert {v.peer_id for v in after.peers} == {one.peer_id, two.peer_id}
        nursery.cancel_scope.cancel()
