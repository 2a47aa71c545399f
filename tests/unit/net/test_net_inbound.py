"""Inbound stream slots, eviction and the memory budget (mesh.net.inbound), and port probes."""

from __future__ import annotations

import socket

import pytest

from mesh.core import limits
from mesh.errors import ConfigError
from mesh.net.heap import trim_heap
from mesh.net.inbound import InboundLimits, InboundStreams, Slot, StreamEvicted
from mesh.net.ports import check_listen_ports

pytestmark = pytest.mark.unit

MiB = limits.MiB


class Streams:
    """InboundStreams with a log of which slots were cancelled."""

    def __init__(self, **limits_: int | float) -> None:
        self.cancelled: list[str] = []
        self.trims = 0

        def trim() -> None:
            self.trims += 1

        self.inbound = InboundStreams(InboundLimits(**limits_), trim=trim)  # type: ignore[arg-type]

    def open(self, peer: str, name: str, now: float = 0.0) -> Slot | None:
        slot, _ = self.inbound.open(
            peer, "/ip4/1.2.3.4/tcp/1", now=now, cancel=lambda: self.cancelled.append(name)
        )
        return slot


def test_a_new_stream_evicts_the_one_longest_without_a_completed_request() -> None:
    s = Streams(per_peer=2, total=3)
    a1 = s.open("a", "a1", now=0.0)
    a2 = s.open("a", "a2", now=1.0)
    assert a1 is not None and a2 is not None
    a1.waiting(5.0)  # a1 answered a request at t=5: a2 has gone longer without one
    assert s.open("a", "a3", now=6.0) is not None
    assert s.cancelled == ["a2"]
    assert s.inbound.held_by("a") == 2
    # The global cap evicts across peers, the same way.
    s.open("b", "b1", now=7.0)
    assert s.open("c", "c1", now=8.0) is not None
    assert s.cancelled == ["a2", "a1"]
    assert s.inbound.stats.evicted_for_slot == 2


def test_streams_answering_a_request_are_never_evicted() -> None:
    s = Streams(per_peer=2, total=4)
    for name in ("a1", "a2"):
        slot = s.open("a", name)
        assert slot is not None
        slot.handling()
    assert s.open("a", "a3") is None
    assert s.cancelled == [] and s.inbound.stats.refused == 1


def test_a_peer_over_its_memory_budget_is_shed() -> None:
    shed: list[str] = []
    s = Streams(buffered_per_peer=limits.MAX_MESSAGE_BYTES + 1024, buffered_total=100 * MiB)
    s.inbound.on_shed = shed.append
    big = s.open("a", "big")
    small = s.open("a", "small")
    other = s.open("b", "other")
    assert big is not None and small is not None and other is not None
    big.reading()
    big.hold(60 * MiB, now=0.0)
    other.reading()
    other.hold(1 * MiB, now=0.0)
    small.reading()
    small.hold(3 * MiB, now=0.0)
    # 65 MiB in all for peer a: over its budget. Every message of a goes, the
    # asking stream's own by raising; the adapter is told to close a's connection.
    with pytest.raises(StreamEvicted):
        small.hold(5 * MiB, now=1.0)
    assert s.cancelled == ["big"]
    assert shed == ["a"]
    assert s.inbound.buffered == 1 * MiB  # b's message stays
    assert s.inbound.held_by("a") == 0 and s.inbound.held_by("b") == 1
    assert s.inbound.stats.shed == 1


def test_a_shed_peer_is_refused_for_shed_s_then_let_back() -> None:
    s = Streams(buffered_per_peer=limits.MAX_MESSAGE_BYTES + 1024, shed_s=30.0)
    slot = s.open("a", "a1", now=0.0)
    assert slot is not None
    slot.reading()
    with pytest.raises(StreamEvicted):
        slot.hold(limits.MAX_MESSAGE_BYTES + 2048, now=10.0)
    assert s.inbound.is_shed("a", now=39.9)
    assert s.open("a", "a2", now=39.9) is None
    assert s.inbound.stats.refused_shed == 1
    assert s.open("b", "b1", now=39.9) is not None  # others are served all along
    assert not s.inbound.is_shed("a", now=40.0)
    assert s.open("a", "a3", now=40.0) is not None


def test_streams_of_a_shed_peer_answering_a_request_are_left_to_end() -> None:
    s = Streams(buffered_total=80 * MiB)
    answering = s.open("hog", "answering")
    flooding = s.open("hog", "flooding")
    assert answering is not None and flooding is not None
    answering.handling()
    flooding.reading()
    flooding.hold(50 * MiB, now=0.0)
    honest = s.open("honest", "honest")
    assert honest is not None
    honest.reading()
    honest.hold(31 * MiB, now=0.0)  # 81 MiB: the hog is shed, not the asker
    assert s.cancelled == ["flooding"]
    # The answering stream holds no message memory; closing the connection ends it.
    assert s.inbound.held_by("hog") == 1 and not answering.evicted
    assert s.inbound.buffered == 31 * MiB


def test_over_the_total_the_peer_holding_most_gives_way() -> None:
    s = Streams(buffered_total=80 * MiB)
    hogs = [s.open(f"hog{i}", f"hog{i}") for i in range(3)]
    for slot in hogs:
        assert slot is not None
        slot.reading()
        slot.hold(25 * MiB, now=0.0)
    honest = s.open("honest", "honest")
    assert honest is not None
    honest.reading()
    honest.hold(10 * MiB, now=0.0)  # 85 MiB: the first of the biggest holders goes
    assert s.cancelled == ["hog0"]
    assert s.inbound.buffered == 60 * MiB
    assert s.inbound.stats.peak_buffered <= 85 * MiB
    # A finished message moves to the handler: its bytes leave the budget.
    honest.handling()
    assert s.inbound.buffered == 50 * MiB


def test_freed_memory_is_given_back_once_enough_was_freed() -> None:
    s = Streams(trim_after_bytes=16 * MiB)
    slot = s.open("a", "a")
    assert slot is not None
    slot.reading()
    slot.hold(20 * MiB, now=0.0)
    s.inbound.close(slot, now=10.0)
    assert s.trims == 1
    assert not s.inbound.maybe_trim(now=20.0)  # nothing freed since
    assert trim_heap() in (True, False)  # runs (glibc) or says it cannot


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError):
        InboundLimits(per_peer=0)
    with pytest.raises(ConfigError):
        InboundLimits(buffered_per_peer=limits.MAX_MESSAGE_BYTES - 1)  # one message must fit
    with pytest.raises(ConfigError):
        InboundLimits(progress_window_s=0)
    with pytest.raises(ConfigError):
        InboundLimits(shed_s=-1)


def test_a_port_in_use_is_refused_by_name_even_with_reuseport() -> None:
    holder = socket.socket()
    # The library listens with SO_REUSEPORT, which would let a second listener in.
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"TCP port {port} is already in use"):
            check_listen_ports([f"/ip4/127.0.0.1/tcp/{port}"])
        with pytest.raises(ConfigError, match="already in use"):
            check_listen_ports([f"/ip4/0.0.0.0/tcp/{port}"])
    finally:
        holder.close()
    check_listen_ports([f"/ip4/127.0.0.1/tcp/{port}", "/ip4/127.0.0.1/tcp/0"])  # free again
