"""Fair shares between sources: address prefixes, the fair queue, who makes room."""

from __future__ import annotations

from collections import Counter

import pytest

from mesh.node.fairqueue import FairQueue
from mesh.node.fairshare import Held, room_for
from mesh.node.pacing import PACE_S, REFUSAL_BURST, RefusalPacer
from mesh.node.sources import Source, address_prefix, source_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("addr", "prefix"),
    [
        ("/ip4/203.0.113.7/tcp/4001", "/ip4/203.0.113.0/24"),
        ("/ip4/127.0.0.1/tcp/5", "/ip4/127.0.0.0/24"),  # loopback: no exception
        ("/ip6/2001:db8:1:2::5/tcp/1", "/ip6/2001:db8:1::/48"),
        ("/ip6/::1/tcp/9", "/ip6/::/48"),
        ("/ip6/::ffff:10.1.2.3/tcp/1", "/ip4/10.1.2.0/24"),  # mapped: its IPv4 address
        ("", ""),
        ("/memory/peer", ""),
        ("/ip4/not-an-ip/tcp/1", ""),
    ],
)
def test_address_prefixes(addr: str, prefix: str) -> None:
    assert address_prefix(addr) == prefix


def test_a_source_without_an_address_is_its_own_prefix() -> None:
    assert source_of("QmPeer", "", b"k").prefix == "peer:QmPeer"
    assert source_of("QmPeer", "/ip4/1.2.3.4/tcp/1", b"k").path == (
        "/ip4/1.2.3.0/24",
        "QmPeer",
        b"k",
    )


def _drain(queue: FairQueue[str]) -> list[str]:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    return out


def test_each_prefix_gets_its_share_whatever_the_peers_and_keys_behind_it() -> None:
    queue: FairQueue[str] = FairQueue(3)
    for i in range(30):  # one prefix, a fresh peer and key per task
        queue.push(("sybil-net", f"peer{i}", f"key{i}"), f"s{i}")
    for i in range(3):
        queue.push(("honest-net", "peer", "key"), f"h{i}")
    order = _drain(queue)
    # The honest prefix's three tasks come in the first six turns.
    assert Counter(name[0] for name in order[:6]) == {"s": 3, "h": 3}
    assert len(order) == 33


def test_costs_are_shares_of_work_not_of_turns() -> None:
    queue: FairQueue[str] = FairQueue(1)
    for i in range(4):
        queue.push(("heavy",), f"H{i}", cost=4.0)
    for i in range(16):
        queue.push(("light",), f"l{i}", cost=1.0)
    order = _drain(queue)
    first_half = order[:10]  # 4 + 4x1 units each side after ~10 turns
    assert Counter(name[0] for name in first_half) == {"H": 2, "l": 8}


def test_a_source_whose_queue_empties_for_a_moment_keeps_its_debt() -> None:
    queue: FairQueue[str] = FairQueue(1)
    queue.push(("a",), "a0")
    assert queue.pop() == "a0"  # a's queue is empty now, but it was served
    queue.push(("a",), "a1")
    queue.push(("b",), "b0")
    assert queue.pop() == "b0"  # b has not been served: its turn first


def test_idleness_banks_no_credit() -> None:
    queue: FairQueue[str] = FairQueue(1)
    for i in range(5):
        queue.push(("busy",), f"x{i}")
    for _ in range(4):
        queue.pop()
    queue.push(("late",), "l0")
    queue.push(("late",), "l1")
    # "late" starts level with the virtual time, not at zero: one turn ahead at
    # most, then it alternates (starting at zero it would take both turns first).
    assert _drain(queue) == ["l0", "x4", "l1"]


def test_remove_and_errors() -> None:
    queue: FairQueue[str] = FairQueue(2)
    a, b = "a", "b"
    queue.push(("p", "k"), a)
    queue.push(("p", "k"), b)
    assert queue.remove(a) and not queue.remove(a)
    assert len(queue) == 1 and queue.pop() == b and queue.pop() is None
    with pytest.raises(ValueError):
        queue.push(("p",), a)  # wrong depth
    queue.push(("p", "k"), a)
    with pytest.raises(ValueError):
        queue.push(("p", "k"), a)  # already waiting


def _held(task: int, prefix: str, peer: str, key: str, *, waiting: bool = True) -> Held:
    return Held(bytes([task]), Source(prefix, peer, key.encode()), task, waiting)


def test_room_comes_from_the_biggest_source_and_its_latest_waiting_task() -> None:
    held = [_held(1, "net-a", "p1", "k1", waiting=False)]
    held += [_held(i, "net-a", f"p{i}", f"k{i}") for i in range(2, 6)]
    newcomer = Source("net-b", "p", b"k")
    assert room_for(newcomer, held) == bytes([5])


def test_no_room_from_an_equal_or_own_source_or_a_running_task() -> None:
    # One more than the newcomer's group would just swap roles: not taken.
    held = [_held(1, "net-a", "p", "k"), _held(2, "net-b", "p", "k")]
    assert room_for(Source("net-b", "q", b"k"), held) is None
    # The newcomer's own source never makes room for it.
    held = [_held(i, "net-a", "p", "k") for i in range(1, 5)]
    assert room_for(Source("net-a", "p", b"k"), held) is None
    # Running tasks keep their places.
    held = [_held(i, "net-a", "p", "k", waiting=False) for i in range(1, 5)]
    assert room_for(Source("net-b", "p", b"k"), held) is None


def test_within_one_prefix_peers_share_and_within_a_peer_keys_share() -> None:
    held = [_held(i, "net", "greedy", f"k{i}") for i in range(1, 5)]
    held += [_held(5, "net", "modest", "k")]
    # Another peer of the same prefix: the greedy peer makes room.
    assert room_for(Source("net", "third", b"k"), held) == bytes([4])
    held = [_held(i, "net", "p", "greedy") for i in range(1, 4)]
    assert room_for(Source("net", "p", b"other"), held) == bytes([3])


def test_refusals_are_paced_for_a_source_holding_much_or_refused_often() -> None:
    pacer = RefusalPacer()
    modest = Source("net-a", "p", b"k")
    # Holding little, refused rarely: answered at once.
    assert pacer.delay(modest, holding=(1, 1, 1), share=16, capacity=64, now=0.0) == 0.0
    # Its key (or peer) at a client's cap, or its prefix at half the node: held back.
    assert pacer.delay(modest, holding=(1, 1, 16), share=16, capacity=64, now=0.0) == PACE_S
    assert pacer.delay(modest, holding=(32, 1, 1), share=16, capacity=64, now=0.0) == PACE_S
    # A peer refused again and again, holding nothing: paced past its burst...
    flood = Source("net-b", "flooder", b"fresh")
    delays = [
        pacer.delay(flood, holding=(0, 0, 0), share=16, capacity=64, now=1.0) for _ in range(100)
    ]
    assert delays[: int(REFUSAL_BURST)] == [0.0] * int(REFUSAL_BURST)
    assert set(delays[int(REFUSAL_BURST) :]) == {PACE_S}
    # ...while another peer of another prefix is not.
    other = Source("net-c", "other", b"k")
    assert pacer.delay(other, holding=(0, 0, 0), share=16, capacity=64, now=1.0) == 0.0
