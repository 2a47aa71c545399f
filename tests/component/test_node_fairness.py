"""A node shared fairly between sources, on a fake clock over the memory network.

Sources here are transport peers (the memory network gives no addresses, so each
peer is its own prefix): a peer sending tasks under fresh client keys gets one
peer's share of the places and turns; a newcomer takes a waiting task's place
from a source holding more; work past its expiry or for a requester that left
is dropped; only tasks that start running take a replay-cache entry, and they
start no faster than the cache can remember for a whole window.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.testing
from meshfakes import FakeExecution, FakeRunner, identity, inputs, request_bytes, signed_task, wall
from meshfakes import start_node as _start_node

from mesh.core.messages import ErrorReply, decode_response
from mesh.core.replay import REPLAY_WINDOW_S
from mesh.core.values import Values
from mesh.errors import DeadlineExceeded
from mesh.net.interface import TASK_PROTOCOL, PeerAddr
from mesh.node.pacing import PACE_S
from mesh.node.service import Node
from mesh.testing import MemoryHub, MemoryNetwork

pytestmark = pytest.mark.component


@dataclass
class OrderRunner(FakeRunner):
    """Records which task (by its input's first value) started when."""

    starts: list[tuple[float, float]] = field(default_factory=list)

    async def run(
        self, model_root: bytes, inputs: Values, params: dict[str, int], **kw: object
    ) -> FakeExecution:  # type: ignore[override]
        x = inputs["x"]
        assert not isinstance(x, list)
        import struct

        self.starts.append((trio.current_time(), struct.unpack_from("<f", x.data)[0]))
        return await super().run(model_root, inputs, params, **kw)  # type: ignore[arg-type]


async def _ask(
    net: MemoryNetwork, node: Node, n: int, value: float, *, nonce: int = 0, **task: object
) -> bytes:
    values = inputs(value)
    signed = signed_task(
        identity(n),
        values,
        now_ms=wall()(),
        nonce=bytes([n, nonce]) * 8,
        **task,  # type: ignore[arg-type]
    )
    return await net.request(
        PeerAddr(node.peer_id), TASK_PROTOCOL, request_bytes(signed, values), timeout=60
    )


def _code(answer: bytes) -> str:
    reply = decode_response(answer)
    return reply.code if isinstance(reply, ErrorReply) else "ok"


async def test_a_newcomer_takes_a_waiting_place_and_its_turn_comes_first(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    runner = OrderRunner(compute_s=1.0)
    async with trio.open_nursery() as nursery:
        # One place at the runner, four in all.
        node = await _start_node(nursery, hub, 1, runner, tmp_path, max_queue=4, max_batch=1)
        answers: dict[float, str] = {}
        async with hub.join("sybil-peer") as sybil, hub.join("honest-peer") as honest:

            async def send(net: MemoryNetwork, n: int, value: float) -> None:
                answers[value] = _code(await _ask(net, node, n, value))

            async with trio.open_nursery() as inner:
                for i in range(4):  # a fresh client key per task, one transport peer
                    inner.start_soon(send, sybil, 60 + i, float(i))
                    await trio.testing.wait_all_tasks_blocked()
                assert node.status().in_flight == 4  # full: 1 running, 3 waiting
                inner.start_soon(send, honest, 70, 100.0)
        # The honest peer took the newest waiting place of the peer holding more...
        assert answers == {0.0: "ok", 1.0: "ok", 2.0: "ok", 3.0: "busy", 100.0: "ok"}
        # ...and had the next turn, before the sybil's older waiting tasks.
        assert [value for _, value in runner.starts] == [0.0, 100.0, 1.0, 2.0]
        nursery.cancel_scope.cancel()


async def test_work_past_its_expiry_is_dropped_unrun(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    runner = OrderRunner(compute_s=30.0)
    async with trio.open_nursery() as nursery:
        node = await _start_node(nursery, hub, 1, runner, tmp_path, max_batch=1)
        codes: list[str] = []
        async with hub.join("a-peer") as net:

            async def send(n: int, value: float, window_ms: int) -> None:
                codes.append(_code(await _ask(net, node, n, value, window_ms=window_ms)))

            async with trio.open_nursery() as inner:
                inner.start_soon(send, 60, 1.0, 60_000)  # runs 30 s
                await trio.testing.wait_all_tasks_blocked()
                inner.start_soon(send, 61, 2.0, 5_000)  # waits, and expires after 5 s
        assert sorted(codes) == ["expired", "ok"]
        assert [value for _, value in runner.starts] == [1.0]  # the expired one never ran
        assert node.status().in_flight == 0
        nursery.cancel_scope.cancel()


async def test_a_requester_that_leaves_has_its_task_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    runner = OrderRunner(compute_s=30.0)
    async with trio.open_nursery() as nursery:
        node = await _start_node(nursery, hub, 1, runner, tmp_path, max_batch=1)
        async with hub.join("a-peer") as net:
            values = inputs(1.0)
            signed = signed_task(identity(60), values, now_ms=wall()(), nonce=b"\x07" * 16)
            with pytest.raises(DeadlineExceeded):
                await net.request(
                    PeerAddr(node.peer_id), TASK_PROTOCOL, request_bytes(signed, values), timeout=2
                )
            await trio.testing.wait_all_tasks_blocked()
            assert node.status().in_flight == 0  # dropped at once, not after 30 s
            assert runner.ran == 0
        nursery.cancel_scope.cancel()


async def test_only_started_tasks_take_replay_entries(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        node = await _start_node(
            nursery, hub, 1, FakeRunner(), tmp_path, max_in_flight_per_client=1
        )
        replay = node._handler._replay
        async with hub.join("a-peer") as net:
            for i in range(20):  # refused as invalid input: no entry, no place
                values: Values = {"bad": inputs()["x"]}
                signed = signed_task(
                    identity(80 + i), values, now_ms=wall()(), nonce=bytes([i]) * 16
                )
                reply = decode_response(
                    await net.request(
                        PeerAddr(node.peer_id),
                        TASK_PROTOCOL,
                        request_bytes(signed, values),
                        timeout=5,
                    )
                )
                assert isinstance(reply, ErrorReply) and reply.code == "invalid-input"
            assert len(replay) == 0
            assert _code(await _ask(net, node, 60, 1.0)) == "ok"
            assert len(replay) == 1
            # The same task again is a replay, and still one entry.
            assert _code(await _ask(net, node, 60, 1.0)) == "replayed"
            assert len(replay) == 1
        nursery.cancel_scope.cancel()


async def test_tasks_start_no_faster_than_the_replay_cache_can_remember(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    runner = OrderRunner(compute_s=0.01)
    # 2 starts per second (and 2 at once) for a window: entries <= burst + rate x window.
    entries = round(2 * (REPLAY_WINDOW_S + 2))
    async with trio.open_nursery() as nursery:
        node = await _start_node(nursery, hub, 1, runner, tmp_path, replay_entries=entries)
        async with hub.join("a-peer") as net:
            t0 = trio.current_time()
            async with trio.open_nursery() as inner:
                for i in range(6):
                    inner.start_soon(_ask, net, node, 60 + i, float(i))
        starts = sorted(t - t0 for t, _ in runner.starts)
        assert starts == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0], abs=1e-6)
        assert len(node._handler._replay) == 6
        nursery.cancel_scope.cancel()


async def test_a_flooding_peer_gets_its_busy_answers_late_others_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    gate = trio.Event()
    async with trio.open_nursery() as nursery:
        node = await _start_node(
            nursery,
            hub,
            1,
            FakeRunner(gate=gate),
            tmp_path,
            max_in_flight_per_client=2,
            max_queue=3,
        )
        async with hub.join("flooder") as flooder, hub.join("modest") as modest:
            for nonce in (1, 2):  # the flooder's key holds its share...
                nursery.start_soon(functools.partial(_ask, flooder, node, 60, 1.0, nonce=nonce))
                await trio.testing.wait_all_tasks_blocked()
            t0 = trio.current_time()
            assert _code(await _ask(flooder, node, 60, 1.0, nonce=3)) == "busy"
            assert trio.current_time() - t0 == pytest.approx(PACE_S)  # held back: paced
            nursery.start_soon(_ask, modest, node, 61, 1.0)
            await trio.testing.wait_all_tasks_blocked()
            # The node is full now; a peer holding less than a share hears so at once.
            t0 = trio.current_time()
            assert _code(await _ask(modest, node, 62, 1.0)) == "busy"
            assert trio.current_time() == t0
            gate.set()
        nursery.cancel_scope.cancel()
