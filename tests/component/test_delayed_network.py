"""The --wan=app fallback: DelayedNetwork adds the emulated round trip per peer."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mesh.errors import DeadlineExceeded
from mesh.net.interface import Inbound, PeerAddr
from mesh.testing import MemoryHub
from mesh.testnet.wan import DelayedNetwork, rtt_ms

pytestmark = pytest.mark.component


async def _echo(request: Inbound) -> bytes:
    message = request.message
    return message


async def test_requests_take_the_round_trip_of_the_peers_region(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()
    regions = {"near": "na", "far": "ea"}
    async with hub.join("near") as near, hub.join("far") as far, hub.join("client") as inner:
        near.set_request_handler("/p", _echo)
        far.set_request_handler("/p", _echo)
        client = DelayedNetwork(inner, delay_ms=lambda pid: rtt_ms("na", regions[pid]))
        assert client.peer_id == "client"
        for peer, expected in (("near", 0.010), ("far", 0.230)):
            start = trio.current_time()
            assert await client.request(PeerAddr(peer), "/p", b"x", timeout=1) == b"x"
            assert trio.current_time() - start == pytest.approx(expected)
        start = trio.current_time()
        with pytest.raises(DeadlineExceeded):
            await client.request(PeerAddr("far"), "/p", b"x", timeout=0.1)
        assert trio.current_time() - start == pytest.approx(0.1)  # no longer than the deadline
        assert hub.requests_served["far"] == 1
