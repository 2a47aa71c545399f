"""Requests over real libp2p on 127.0.0.1: reuse, big payloads, garbage, frozen peers."""

from __future__ import annotations

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from netsupport import FAST, PeerProcess, addr_of, networks, seed

from mesh.core import limits
from mesh.core.framing import FrameReader, Message, encode_frames
from mesh.errors import DeadlineExceeded, PeerUnavailable
from mesh.net.interface import TASK_PROTOCOL, Inbound
from mesh.net.libp2p_net import InboundLimits, Libp2pNetwork, NetTimeouts, open_libp2p_network

pytestmark = pytest.mark.integration


async def echo(request: Inbound) -> bytes:
    message = request.message
    return b"echo:" + message


async def test_request_round_trip_reuses_the_stream() -> None:
    async with networks(2) as (server, client):
        seen: list[str] = []

        async def handler(request: Inbound) -> bytes:
            seen.append(request.peer_id)
            assert request.addr.startswith("/ip4/127.0.0.1/tcp/")
            return request.message[::-1]

        server.set_request_handler(TASK_PROTOCOL, handler)
        target = addr_of(server)
        for payload in (b"abc", b"hello world", bytes(range(256)) * 4):
            answer = await client.request(target, TASK_PROTOCOL, payload, timeout=5)
            assert answer == payload[::-1]
        assert client.stats.opened == 1  # the 2nd and 3rd requests reused it
        assert client.stats.reused == 2
        assert seen == [client.peer_id] * 3
        assert server.stats.served_messages == 3


async def _three_partials(request: Inbound) -> bytes:
    for i in range(3):
        await request.send_partial(b"part%d:" % i + request.message)
    return b"final:" + request.message


async def test_partial_answers_arrive_in_order_before_the_final_one() -> None:
    async with networks(2) as (server, client):
        server.set_request_handler(TASK_PROTOCOL, _three_partials)
        target = addr_of(server)
        for payload in (b"a", b"b" * (limits.MAX_FRAME_BYTES + 10)):  # one frame, several
            got: list[bytes] = []

            async def collect(data: bytes, into: list[bytes] = got) -> None:
                into.append(data)

            answer = await client.request(
                target, TASK_PROTOCOL, payload, timeout=30, on_partial=collect
            )
            assert got == [b"part%d:" % i + payload for i in range(3)]
            assert answer == b"final:" + payload
        assert client.stats.opened == 1  # the stream went back to the pool after each
        # Partials nobody asked for are a broken answer, and the peer is marked.
        with pytest.raises(PeerUnavailable, match="nobody asked for"):
            await client.request(target, TASK_PROTOCOL, b"c", timeout=5)
        assert not client.is_healthy(server.peer_id)


async def test_concurrent_requests_each_get_their_own_stream() -> None:
    async with networks(2) as (server, client):
        release = trio.Event()
        arrived = 0

        async def slow(request: Inbound) -> bytes:
            nonlocal arrived
            arrived += 1
            if arrived == 2:
                release.set()
            await release.wait()
            return request.message

        server.set_request_handler(TASK_PROTOCOL, slow)
        answers: dict[bytes, bytes] = {}

        async def ask(payload: bytes) -> None:
            answers[payload] = await client.request(
                addr_of(server), TASK_PROTOCOL, payload, timeout=5
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, b"one")
            nursery.start_soon(ask, b"two")
        assert answers == {b"one": b"one", b"two": b"two"}
        assert client.stats.opened == 2


async def test_ten_megabytes_arrive_intact_across_frames() -> None:
    payload = bytes(range(251)) * (10 * 1024 * 1024 // 251 + 1)
    assert len(payload) > 2 * limits.MAX_FRAME_BYTES
    async with networks(2) as (server, client):
        server.set_request_handler(TASK_PROTOCOL, echo)
        answer = await client.request(addr_of(server), TASK_PROTOCOL, payload, timeout=20)
        assert answer == b"echo:" + payload


async def _raw_stream(client: Libp2pNetwork, server: Libp2pNetwork):  # type: ignore[no-untyped-def]
    host = client._host
    return await host.new_stream(ID.from_base58(server.peer_id), [TProtocol(TASK_PROTOCOL)])


async def _read_until_closed(stream) -> bytes:  # type: ignore[no-untyped-def]
    data = b""
    with trio.fail_after(5):
        while True:
            try:
                chunk = await stream.read(65536)
            except Exception:  # reset or EOF: both mean the server gave up on it
                return data
            if not chunk:
                return data
            data += chunk


async def test_garbage_closes_that_stream_and_the_node_keeps_serving() -> None:
    async with networks(2) as (server, client):
        server.set_request_handler(TASK_PROTOCOL, echo)
        target = addr_of(server)
        assert await client.request(target, TASK_PROTOCOL, b"before", timeout=5) == b"echo:before"

        bad = await _raw_stream(client, server)
        await bad.write(b"\x07garbage that is no frame at all")
        assert await _read_until_closed(bad) == b""  # no answer, stream closed

        oversized = await _raw_stream(client, server)
        await oversized.write(b"\x00\xff\xff\xff\xff")  # declares a 4 GiB frame
        assert await _read_until_closed(oversized) == b""

        assert server.stats.rejected_streams == 2
        assert await client.request(target, TASK_PROTOCOL, b"after", timeout=5) == b"echo:after"


async def test_a_silent_client_is_dropped_after_the_idle_deadline() -> None:
    quick = NetTimeouts(server_idle=0.3)
    async with (
        open_libp2p_network(identity_seed=seed(7), timeouts=quick) as server,
        open_libp2p_network(identity_seed=seed(8), bootstrap=server.listen_addrs()) as client,
    ):
        server.set_request_handler(TASK_PROTOCOL, echo)
        silent = await _raw_stream(client, server)
        assert await _read_until_closed(silent) == b""  # the server let go of it
        # A pooled stream the server dropped is replaced without failing the request.
        target = addr_of(server)
        assert await client.request(target, TASK_PROTOCOL, b"a", timeout=5) == b"echo:a"
        # Wait (on the stream itself) until the server drops the idle pooled stream.
        pooled = client._pool.take(server.peer_id, TASK_PROTOCOL, now=trio.current_time())
        assert pooled is not None
        assert await _read_until_closed(pooled) == b""
        client._pool.give_back(server.peer_id, TASK_PROTOCOL, pooled, now=trio.current_time())
        assert await client.request(target, TASK_PROTOCOL, b"b", timeout=5) == b"echo:b"
        assert client.stats.reused == 1  # tried the dead pooled stream first...
        assert client.stats.opened == 2  # ...then opened a fresh one
        assert client.is_healthy(server.peer_id)


async def _ping(stream) -> list[Message]:  # type: ignore[no-untyped-def]
    await stream.write(encode_frames(b"ping"))
    reader = FrameReader()
    messages: list[Message] = []
    with trio.fail_after(5):
        while not messages:
            messages = reader.feed(await stream.read(65536))
    return messages


async def test_a_new_stream_over_the_per_peer_cap_evicts_the_longest_idle_one() -> None:
    per_peer = InboundLimits().per_peer
    async with networks(2) as (server, client):
        server.set_request_handler(TASK_PROTOCOL, echo)
        held = [await _raw_stream(client, server) for _ in range(per_peer)]
        for stream in held:  # each is being served: it answers
            assert await _ping(stream) == [Message(b"echo:ping")]
        # One more: the stream idle the longest (the first one answered) gives way.
        extra = await _raw_stream(client, server)
        assert await _ping(extra) == [Message(b"echo:ping")]
        assert await _read_until_closed(held[0]) == b""
        assert server.inbound_stats.evicted_for_slot == 1
        assert server.stats.rejected_streams == 0
        for stream in [*held[1:], extra]:
            assert await _ping(stream) == [Message(b"echo:ping")]
            await stream.close()


async def test_streams_being_answered_are_never_evicted_a_new_one_is_refused() -> None:
    per_peer = InboundLimits().per_peer
    async with networks(2) as (server, client):
        release = trio.Event()
        all_answering = trio.Event()
        answering = 0

        async def slow(request: Inbound) -> bytes:
            nonlocal answering
            answering += 1
            if answering == per_peer:
                all_answering.set()
            await release.wait()
            return request.message

        server.set_request_handler(TASK_PROTOCOL, slow)
        held = [await _raw_stream(client, server) for _ in range(per_peer)]
        for stream in held:
            await stream.write(encode_frames(b"wait"))
        with trio.fail_after(5):
            await all_answering.wait()
        try:  # refused: reset at once, sometimes before the opener even sees it open
            extra = await _raw_stream(client, server)
        except BaseLibp2pError:
            pass
        else:
            assert await _read_until_closed(extra) == b""
        assert server.inbound_stats.refused == 1
        release.set()
        for stream in held:
            reader = FrameReader()
            with trio.fail_after(5):
                messages: list[Message] = []
                while not messages:
                    messages = reader.feed(await stream.read(65536))
            assert messages == [Message(b"wait")]
            await stream.close()


async def test_a_handler_error_resets_only_its_stream() -> None:
    async with networks(2) as (server, client):

        async def picky(request: Inbound) -> bytes:
            if request.message == b"boom":
                raise RuntimeError("handler bug")
            return b"fine"

        server.set_request_handler(TASK_PROTOCOL, picky)
        target = addr_of(server)
        with pytest.raises(PeerUnavailable):
            await client.request(target, TASK_PROTOCOL, b"boom", timeout=5)
        assert await client.request(target, TASK_PROTOCOL, b"ok", timeout=5) == b"fine"


async def test_a_raw_framed_request_is_answered() -> None:
    # The wire format is exactly mesh.core.framing: a non-Python client can talk to us.
    async with networks(2) as (server, client):
        server.set_request_handler(TASK_PROTOCOL, echo)
        stream = await _raw_stream(client, server)
        await stream.write(encode_frames(b"raw"))
        reader = FrameReader()
        messages: list[Message] = []
        with trio.fail_after(5):
            while not messages:
                messages = reader.feed(await stream.read(65536))
        assert messages == [Message(b"echo:raw")]
        await stream.close()


async def test_a_garbage_answer_is_peer_unavailable_and_marks_the_peer() -> None:
    async with networks(2) as (server, client):

        async def liar(stream) -> None:  # type: ignore[no-untyped-def]
            await stream.read(65536)
            await stream.write(b"\x09 not a frame")
            await stream.close()

        server._host.set_stream_handler(TProtocol("/liar/1"), liar)
        with pytest.raises(PeerUnavailable):
            await client.request(addr_of(server), "/liar/1", b"hello", timeout=5)
        assert not client.is_healthy(server.peer_id)


async def test_unknown_peer_is_unavailable_and_marked() -> None:
    async with networks(1) as (client,):
        from mesh.net.interface import PeerAddr

        ghost = PeerAddr("12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5", ())
        with pytest.raises((PeerUnavailable, DeadlineExceeded)):
            await client.request(ghost, TASK_PROTOCOL, b"x", timeout=2)
        assert not client.is_healthy(ghost.peer_id)


async def test_frozen_peer_process_fails_within_the_deadline(peer_process: PeerProcess) -> None:
    async with networks(2) as (_boot, client):
        await client.connect(peer_process.peer, timeout=5)
        answer = await client.request(peer_process.peer, TASK_PROTOCOL, b"hi", timeout=5)
        assert answer == b"echo:hi"
        assert client.is_healthy(peer_process.peer.peer_id)

        peer_process.freeze()
        # DHT traffic notices the frozen peer (its stream open stalls), marks it,
        # and finishes with the others inside the DHT deadline instead of
        # waiting the library's 10 s per query.
        await client.provide(b"\x42" * 32, timeout=FAST.dht)
        assert not client.is_healthy(peer_process.peer.peer_id)
        # ...and its connection is closed, so no library task waits on it any more.
        eviction = client._evicting.get(peer_process.peer.peer_id)
        if eviction is not None:
            with trio.fail_after(5):
                await eviction.wait()
        assert ID.from_base58(peer_process.peer.peer_id) not in client._host.get_connected_peers()
        assert peer_process.peer.peer_id not in {p.peer_id for p in client.known_peers()}
        await client.find_providers(b"\x43" * 32, count=2, timeout=FAST.dht)

        # An explicit request still tries it, and fails at the request deadline.
        with pytest.raises(DeadlineExceeded):
            await client.request(peer_process.peer, TASK_PROTOCOL, b"still there?", timeout=1)
        assert not client.is_healthy(peer_process.peer.peer_id)
