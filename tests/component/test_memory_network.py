"""The in-memory network itself: delivery, faults, records, pubsub, on a fake clock."""

from __future__ import annotations

import pytest
import trio

from mesh.errors import DeadlineExceeded, MalformedMessage, PeerUnavailable, TooLarge
from mesh.net.health import DEFAULT_BASE_BACKOFF_S
from mesh.net.interface import Inbound, PeerAddr
from mesh.net.memory import MAX_PUBSUB_BYTES, MemoryHub

pytestmark = pytest.mark.component


async def _echo(request: Inbound) -> bytes:
    peer, message = request.peer_id, request.message
    if message == b"garbage":
        raise MalformedMessage("not a request")
    return peer.encode() + b":" + message


async def test_partial_answers_and_a_requester_that_leaves_mid_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()
    left = trio.Event()

    async def stream_tokens(request: Inbound) -> bytes:
        try:
            for i in range(10):
                await request.send_partial(b"%d" % i)
                await trio.sleep(1)
        except (PeerUnavailable, trio.Cancelled):
            # The requester gave up: the network cancels the work for it (as the
            # libp2p stream server does), or a partial finds nobody to take it.
            left.set()
            raise
        return b"done"

    async with hub.join("server") as server, hub.join("client") as client:
        server.set_request_handler("/p", stream_tokens)
        got: list[bytes] = []

        async def collect(data: bytes) -> None:
            got.append(data)

        answer = await client.request(
            PeerAddr("server"), "/p", b"go", timeout=30, on_partial=collect
        )
        assert answer == b"done" and got == [b"%d" % i for i in range(10)]
        with pytest.raises(PeerUnavailable, match="nobody asked for"):
            await client.request(PeerAddr("server"), "/p", b"go", timeout=30)
        got.clear()
        with pytest.raises(DeadlineExceeded):
            await client.request(PeerAddr("server"), "/p", b"go", timeout=2.5, on_partial=collect)
        assert got == [b"0", b"1", b"2"]
        with trio.fail_after(5):
            await left.wait()


async def test_request_reaches_handler_and_faults_behave(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()
    async with hub.join("server") as server, hub.join("client") as client:
        server.set_request_handler("/p", _echo)
        target = PeerAddr("server")
        assert await client.request(target, "/p", b"hi", timeout=1) == b"client:hi"
        with pytest.raises(PeerUnavailable):
            await client.request(target, "/p", b"garbage", timeout=1)  # stream closed
        with pytest.raises(PeerUnavailable):
            await client.request(target, "/other", b"hi", timeout=1)  # protocol not served
        with pytest.raises(PeerUnavailable):
            await client.request(PeerAddr("nobody"), "/p", b"hi", timeout=1)
        hub.freeze("server")
        start = trio.current_time()
        with pytest.raises(DeadlineExceeded):
            await client.request(target, "/p", b"hi", timeout=3)
        assert trio.current_time() - start == 3.0  # hung exactly until the deadline
        hub.thaw("server")
        assert await client.request(target, "/p", b"again", timeout=1) == b"client:again"
        hub.drop("server")
        with pytest.raises(DeadlineExceeded):
            await client.request(target, "/p", b"lost", timeout=2)
        hub.drop("server", enabled=False)
        assert hub.requests_served["server"] == 3  # hi, garbage, again: not the lost one


async def test_killed_peer_keeps_stale_provider_records(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()
    async with hub.join("client") as client:
        async with trio.open_nursery() as nursery:

            async def serve(
                *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
            ) -> None:
                async with hub.join("server") as server:
                    server.set_request_handler("/p", _echo)
                    await server.provide(b"k" * 32, timeout=1)
                    task_status.started()
                    await trio.sleep_forever()

            await nursery.start(serve)
            hub.kill("server")
        # Like libp2p's 48 h provider cache, the record outlives the peer...
        found = await client.find_providers(b"k" * 32, count=5, timeout=1)
        assert [p.peer_id for p in found] == ["server"]
        with pytest.raises(PeerUnavailable):
            await client.request(found[0], "/p", b"hi", timeout=1)
        # ...until a request to it fails: the health list then skips it for a backoff.
        assert not client.is_healthy("server") and client.consecutive_failures("server") == 1
        assert await client.find_providers(b"k" * 32, count=5, timeout=1) == []
        await trio.sleep(DEFAULT_BASE_BACKOFF_S)
        assert len(await client.find_providers(b"k" * 32, count=5, timeout=1)) == 1


async def test_pubsub_delivers_to_others_and_caps_size(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()
    async with hub.join("a") as a, hub.join("b") as b, hub.join("c") as c:
        inbox_b = await b.subscribe("/t")
        inbox_a = await a.subscribe("/t")
        await c.publish("/t", b"load", timeout=1)
        assert inbox_b.receive_nowait() == ("c", b"load")
        assert inbox_a.receive_nowait() == ("c", b"load")
        await a.publish("/t", b"mine", timeout=1)
        with pytest.raises(trio.WouldBlock):
            inbox_a.receive_nowait()  # not delivered to its own publisher
        with pytest.raises(TooLarge):
            await c.publish("/t", b"x" * (MAX_PUBSUB_BYTES + 1), timeout=1)


async def test_records_pass_validators_on_put_and_get(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()

    def only_good(key: str, value: bytes) -> None:
        if not value.startswith(b"good"):
            raise MalformedMessage("bad record")

    async with hub.join("a") as a, hub.join("b") as b:
        for net in (a, b):
            net.set_record_validator("ns", only_good)
        await a.put_record("/ns/x", b"good 1", timeout=1)
        assert await b.get_record("/ns/x", timeout=1) == b"good 1"
        with pytest.raises(MalformedMessage):
            await a.put_record("/ns/x", b"evil", timeout=1)
        a.inject_record("/ns/x", b"evil")  # stored anyway by a buggy peer
        assert await b.get_record("/ns/x", timeout=1) == b"good 1"  # newest *valid* one
        await a.put_record("/ns/x", b"good 2", timeout=1)
        assert await b.get_record("/ns/x", timeout=1) == b"good 2"
        assert await b.get_record("/ns/missing", timeout=1) is None
