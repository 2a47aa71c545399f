"""The dial-back server's policy (fake probe) and the self-check's verdicts (memory network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from mesh.core import dialback as wire
from mesh.core.messages import ErrorReply
from mesh.errors import DeadlineExceeded, MalformedMessage, PeerUnavailable, TooLarge
from mesh.net.interface import Inbound
from mesh.node.dialback import REQUEST_INTERVAL_S, DialbackServer, advice_for

pytestmark = pytest.mark.component

ME = "/ip4/198.51.100.7/tcp/40123"  # the requester's connection, as the server sees it


class FakeProbe:
    def __init__(self, answers: dict[str, BaseException | None]) -> None:
        self.answers = answers
        self.dialled: list[str] = []

    async def __call__(self, addr: str, peer_id: str, *, timeout: float) -> None:  # noqa: ASYNC109 (the probe signature)
        self.dialled.append(addr)
        await trio.lowlevel.checkpoint()
        error = self.answers.get(addr)
        if error is not None:
            raise error


async def _nothing(data: bytes) -> None:
    raise AssertionError("no partials here")


def inbound(addrs: list[str], peer: str = "peer-a", observed: str = ME) -> Inbound:
    return Inbound(peer, observed, wire.encode(wire.DialbackRequest(addrs=tuple(addrs))), _nothing)


async def test_only_the_requesters_own_ip_is_dialled(autojump_clock: Any) -> None:
    probe = FakeProbe(
        {
            "/ip4/198.51.100.7/tcp/2": PeerUnavailable("connection refused"),
            "/ip4/198.51.100.7/tcp/3": DeadlineExceeded("slow"),
        }
    )
    server = DialbackServer(probe)
    addrs = [
        "/ip4/198.51.100.7/tcp/1",  # reachable
        "/ip4/198.51.100.7/tcp/2",  # refused connection
        "/ip4/198.51.100.7/tcp/3",  # no answer
        "/ip4/203.0.113.9/tcp/1",  # someone else: never dialled
    ]
    reply = wire.decode_reply(await server.handle(inbound(addrs)))
    assert isinstance(reply, wire.DialbackReply)
    assert reply.outcomes == ("reachable", "unreachable", "timeout", "refused")
    assert reply.observed == ME
    assert "203.0.113.9/tcp/1" not in " ".join(probe.dialled) and len(probe.dialled) == 3


async def test_dns_names_and_unknown_observed_addresses_are_refused(autojump_clock: Any) -> None:
    probe = FakeProbe({})
    server = DialbackServer(probe)
    reply = wire.decode_reply(await server.handle(inbound(["/dns4/example.org/tcp/1"])))
    assert isinstance(reply, wire.DialbackReply) and reply.outcomes == ("refused",)
    reply = wire.decode_reply(
        await server.handle(inbound(["/ip4/198.51.100.7/tcp/1"], peer="b", observed=""))
    )
    assert isinstance(reply, wire.DialbackReply) and reply.outcomes == ("refused",)
    assert probe.dialled == []


async def test_each_peer_may_ask_once_per_interval(autojump_clock: Any) -> None:
    probe = FakeProbe({})
    server = DialbackServer(probe)
    first = wire.decode_reply(await server.handle(inbound(["/ip4/198.51.100.7/tcp/1"])))
    again = wire.decode_reply(await server.handle(inbound(["/ip4/198.51.100.7/tcp/1"])))
    other = wire.decode_reply(await server.handle(inbound(["/ip4/198.51.100.7/tcp/1"], "b")))
    assert isinstance(first, wire.DialbackReply) and isinstance(other, wire.DialbackReply)
    assert isinstance(again, ErrorReply) and again.code == "busy" and again.retry_after_ms > 0
    await trio.sleep(REQUEST_INTERVAL_S)
    later = wire.decode_reply(await server.handle(inbound(["/ip4/198.51.100.7/tcp/1"])))
    assert isinstance(later, wire.DialbackReply)
    assert len(probe.dialled) == 3


def test_requests_are_bounded() -> None:
    with pytest.raises(TooLarge):
        wire.DialbackRequest(addrs=tuple(f"/ip4/198.51.100.7/tcp/{p}" for p in range(5)))
    with pytest.raises(MalformedMessage):
        wire.DialbackReply(observed="", addrs=("a",), outcomes=(), details=())


def test_advice_names_the_port_to_open() -> None:
    text = advice_for("/ip4/203.0.113.7/tcp/4001", "unreachable", [])
    assert "TCP port 4001" in text and "--announce" in text
    assert advice_for("/ip4/203.0.113.7/tcp/4001", "reachable", []) == ""
    assert "peers see this node at /ip4/10.0.0.5" in advice_for(
        "/ip4/203.0.113.7/tcp/4001", "unknown", ["/ip4/10.0.0.5/tcp/5"]
    )


async def test_a_node_answers_dialback_over_the_network(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    from meshfakes import FakeRunner, start_node

    from mesh.net.interface import PeerAddr
    from mesh.net.memory import MemoryHub
    from mesh.node.dialback import DIALBACK_PROTOCOL

    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        async with hub.join("asker") as net:
            request = wire.encode(wire.DialbackRequest(addrs=("/memory/asker",)))
            data = await net.request(PeerAddr(node.peer_id), DIALBACK_PROTOCOL, request, timeout=5)
        reply = wire.decode_reply(data)
        assert isinstance(reply, wire.DialbackReply)
        assert reply.outcomes == ("refused",)  # a memory address is no TCP address
        nursery.cancel_scope.cancel()
