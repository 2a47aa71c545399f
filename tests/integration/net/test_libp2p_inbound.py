"""Inbound stream limits over real libp2p on 127.0.0.1: stalls, trickles, floods, departures."""

from __future__ import annotations

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from netsupport import FAST, addr_of, seed

from mesh.core import limits
from mesh.core.framing import FLAG_MORE, HEADER, encode_frames
from mesh.errors import DeadlineExceeded, PeerUnavailable
from mesh.net.interface import TASK_PROTOCOL, Inbound
from mesh.net.libp2p_net import InboundLimits, Libp2pNetwork, open_libp2p_network

pytestmark = pytest.mark.integration

# A short progress window keeps the tests quick; the idle deadline stays long,
# so a drop within seconds shows the progress rule at work, not the idle one.
QUICK = InboundLimits(progress_window_s=0.5, progress_min_bytes=4096)


async def echo(request: Inbound) -> bytes:
    return b"echo:" + request.message


async def _raw(client: Libp2pNetwork, server: Libp2pNetwork):  # type: ignore[no-untyped-def]
    return await client._host.new_stream(ID.from_base58(server.peer_id), [TProtocol(TASK_PROTOCOL)])


async def _wait_closed(stream, *, within: float) -> None:  # type: ignore[no-untyped-def]
    """Return once the server reset or closed ``stream``; fail after ``within`` seconds."""
    with trio.fail_after(within):
        while True:
            try:
                if not await stream.read(65536):
                    return
            except Exception:  # reset or EOF: the server let go of it
                return


async def test_three_header_bytes_then_silence_loses_the_slot_within_a_window() -> None:
    async with (
        open_libp2p_network(identity_seed=seed(31), timeouts=FAST, inbound=QUICK) as server,
        open_libp2p_network(
            identity_seed=seed(32), bootstrap=server.listen_addrs(), timeouts=FAST
        ) as client,
    ):
        server.set_request_handler(TASK_PROTOCOL, echo)
        stalled = await _raw(client, server)
        await stalled.write(b"\x00\x00\x00")  # 3 of a header's 5 bytes
        await _wait_closed(stalled, within=10)  # the idle deadline is 60 s
        # A trickle: a byte at a time, under the minimum rate, is dropped too.
        trickle = await _raw(client, server)
        with trio.fail_after(10):
            try:
                for byte in encode_frames(b"x" * 100_000):
                    await trickle.write(bytes([byte]))
                    await trio.sleep(0.01)
            except Exception:
                pass  # reset while writing: dropped
        await _wait_closed(trickle, within=10)
        assert server.stats.rejected_streams == 2
        # Honest requests are served all along.
        assert await client.request(addr_of(server), TASK_PROTOCOL, b"hi", timeout=5) == b"echo:hi"


async def test_a_peer_flooding_unfinished_frames_is_shed_and_others_are_served() -> None:
    budget = InboundLimits(buffered_total=limits.MAX_MESSAGE_BYTES + 8 * limits.MiB)
    async with (
        open_libp2p_network(identity_seed=seed(33), timeouts=FAST, inbound=budget) as server,
        open_libp2p_network(
            identity_seed=seed(34), bootstrap=server.listen_addrs(), timeouts=FAST
        ) as flooder,
        open_libp2p_network(
            identity_seed=seed(35), bootstrap=server.listen_addrs(), timeouts=FAST
        ) as honest,
    ):
        server.set_request_handler(TASK_PROTOCOL, echo)
        frame = HEADER.pack(FLAG_MORE, limits.MAX_FRAME_BYTES) + bytes(limits.MAX_FRAME_BYTES)
        floods = [await _raw(flooder, server), await _raw(flooder, server)]

        async def flood(stream) -> None:  # type: ignore[no-untyped-def]
            try:
                for _ in range(12):
                    await stream.write(frame)
            except Exception:
                pass  # reset by the server, or its connection closed: shed

        # 2 streams of 48 MiB of "more" frames: each under the 64 MiB message cap,
        # together over the peer's budget (one largest message), however they interleave.
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for stream in floods:
                    nursery.start_soon(flood, stream)
        for stream in floods:  # the writes may end before the server read them all
            await _wait_closed(stream, within=30)
        stats = server.inbound_stats
        assert stats.shed == 1 and stats.evicted_for_memory == 2  # both of its streams
        assert stats.peak_buffered <= budget.buffered_total + 256 * limits.KiB  # one read over
        assert server.inbound_buffered == 0
        # The server closed the flooder's connection...
        closing = server._evicting.get(flooder.peer_id)
        if closing is not None:
            with trio.fail_after(10):
                await closing.wait()
        assert ID.from_base58(flooder.peer_id) not in server._host.get_connected_peers()
        # ...and refuses it for shed_s on any new one (its first try may still
        # meet the old connection closing); others are served all along.
        for _ in range(3):
            with pytest.raises(PeerUnavailable):
                await flooder.request(addr_of(server), TASK_PROTOCOL, b"again", timeout=10)
            if stats.refused_shed:
                break
        assert stats.refused_shed >= 1
        assert await honest.request(addr_of(server), TASK_PROTOCOL, b"ok", timeout=10) == b"echo:ok"


async def test_a_requester_that_resets_has_its_request_cancelled() -> None:
    async with (
        open_libp2p_network(identity_seed=seed(36), timeouts=FAST) as server,
        open_libp2p_network(
            identity_seed=seed(37), bootstrap=server.listen_addrs(), timeouts=FAST
        ) as client,
    ):
        started = trio.Event()
        cancelled = trio.Event()

        async def slow(request: Inbound) -> bytes:
            started.set()
            try:
                await trio.sleep(60)
            except trio.Cancelled:
                cancelled.set()
                raise
            return b"too late"

        server.set_request_handler(TASK_PROTOCOL, slow)
        with pytest.raises(DeadlineExceeded):
            await client.request(addr_of(server), TASK_PROTOCOL, b"work", timeout=1)
        assert started.is_set()
        with trio.fail_after(10):
            await cancelled.wait()  # the client's reset cancelled the work
            while True:  # counted once the stream server unwinds (no event to wait on)
                if server.stats.abandoned:
                    break
                await trio.sleep(0.01)
        assert server.stats.abandoned == 1
