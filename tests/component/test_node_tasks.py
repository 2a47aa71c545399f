"""The node's task handler over the memory network, on a fake clock.

Hostile requests go straight to ``/mesh/task/1.0.0``; each must get its typed
error answer (or, for garbage, a closed stream), and the node must keep serving
valid tasks from others right after.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pytest
import trio
from meshfakes import (
    ROOT_B,
    FakeRunner,
    identity,
    inputs,
    request_bytes,
    serve_node,
    signed_task,
    start_node,
    wall,
)

from mesh.client.async_client import check_response
from mesh.core import canonical, limits
from mesh.core.messages import ErrorReply, decode_response
from mesh.errors import PeerUnavailable
from mesh.net.interface import TASK_PROTOCOL, PeerAddr
from mesh.node.receipt_log import read_receipts
from mesh.node.service import Node
from mesh.testing import MemoryHub, MemoryNetwork

pytestmark = pytest.mark.component

CLIENT, OTHER = 50, 51


async def _send(net: MemoryNetwork, node: Node, payload: bytes) -> bytes:
    return await net.request(PeerAddr(node.peer_id), TASK_PROTOCOL, payload, timeout=10)


async def _error_code(net: MemoryNetwork, node: Node, payload: bytes) -> ErrorReply:
    reply = decode_response(await _send(net, node, payload))
    assert isinstance(reply, ErrorReply), reply
    return reply


async def _valid_task_succeeds(net: MemoryNetwork, node: Node, n: int, nonce: bytes) -> None:
    """A valid task from client ``n`` gets a result whose receipt verifies."""
    ident = identity(n)
    values = inputs(float(n))
    task = signed_task(ident, values, now_ms=wall()(), nonce=nonce)
    outputs, receipt = check_response(
        await _send(net, node, request_bytes(task, values)), task=task, worker=node.peer_id
    )
    assert outputs["out_x"] == values["x"]
    assert receipt.message.task_id == task.digest


@pytest.fixture
def hub() -> MemoryHub:
    return MemoryHub()


async def test_valid_task_gets_result_and_chained_receipts(
    hub: MemoryHub, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        async with hub.join(identity(CLIENT).peer_id) as net:
            await _valid_task_succeeds(net, node, CLIENT, b"\x01" * 16)
            await _valid_task_succeeds(net, node, CLIENT, b"\x02" * 16)
        nursery.cancel_scope.cancel()
    chain = read_receipts(tmp_path / "node1" / "receipts.log")
    assert [r.message.seq for r in chain] == [0, 1]
    assert chain[1].message.prev == chain[0].digest


@pytest.mark.parametrize(
    "case",
    [
        "forged",
        "expired",
        "future",
        "replayed",
        "wrong-target",
        "unknown-model",
        "bad-hash",
        "too-many-texts",
        "huge-tensor",
        "too-many-values",
        "invalid-input",
        "crash",
    ],
)
async def test_bad_task_gets_typed_error_then_node_serves_others(
    case: str, hub: MemoryHub, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    expected = {
        "forged": "bad-signature",
        "expired": "expired",
        "future": "expired",
        "replayed": "replayed",
        "wrong-target": "malformed",
        "unknown-model": "unknown-model",
        "bad-hash": "malformed",
        "too-many-texts": "too-large",
        "huge-tensor": "too-large",
        "too-many-values": "too-large",
        "invalid-input": "invalid-input",
        "crash": "internal",
    }[case]
    attacker = identity(CLIENT)
    now = wall()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        async with hub.join(attacker.peer_id) as net:
            values = inputs()
            task = signed_task(attacker, values, now_ms=now())
            payload = request_bytes(task, values)
            if case == "forged":
                wire = task.to_wire()
                wire["sig"] = bytes(64)
                payload = canonical.encode(
                    {"inputs": canonical.decode(payload)["inputs"], "kind": "task", "task": wire}
                )
            elif case == "expired":
                task = signed_task(attacker, values, now_ms=now(), created_ms=now() - 120_000)
                payload = request_bytes(task, values)
            elif case == "future":
                task = signed_task(attacker, values, now_ms=now(), created_ms=now() + 3_600_000)
                payload = request_bytes(task, values)
            elif case == "replayed":
                first = decode_response(await _send(net, node, payload))
                assert not isinstance(first, ErrorReply)
            elif case == "wrong-target":
                task = signed_task(attacker, values, now_ms=now(), target=identity(9).public_key)
                payload = request_bytes(task, values)
            elif case == "unknown-model":
                task = signed_task(attacker, values, now_ms=now(), root=ROOT_B)
                payload = request_bytes(task, values)
            elif case == "bad-hash":
                task = signed_task(attacker, values, now_ms=now(), input_hash=bytes(32))
                payload = request_bytes(task, values)
            elif case == "too-many-texts":
                wire = {"t": ["x"] * (limits.MAX_TEXTS_PER_TASK + 1)}
                digest = hashlib.sha256(canonical.encode(wire)).digest()
                task = signed_task(attacker, {}, now_ms=now(), input_hash=digest)
                payload = canonical.encode({"inputs": wire, "kind": "task", "task": task.to_wire()})
            elif case in ("huge-tensor", "too-many-values"):
                if case == "huge-tensor":
                    # Claims 2**30 elements (over MAX_TENSOR_ELEMENTS) with no data:
                    # refused on the claim, before any allocation.
                    tensor = {"data": b"", "dtype": "float32", "shape": [1 << 30]}
                    wire = {"x": tensor}
                else:
                    wire = {f"v{i}": ["x"] for i in range(limits.MAX_TENSORS_PER_MESSAGE + 1)}
                digest = hashlib.sha256(canonical.encode(wire)).digest()
                task = signed_task(attacker, {}, now_ms=now(), input_hash=digest)
                payload = canonical.encode({"inputs": wire, "kind": "task", "task": task.to_wire()})
            elif case in ("invalid-input", "crash"):
                values = {"bad" if case == "invalid-input" else "crash": ["x"]}
                task = signed_task(attacker, values, now_ms=now())
                payload = request_bytes(task, values)
            reply = await _error_code(net, node, payload)
            assert reply.code == expected, reply.message
        async with hub.join(identity(OTHER).peer_id) as other:
            await _valid_task_succeeds(other, node, OTHER, b"\x07" * 16)
        assert node.status().answered.get(expected) == 1
        nursery.cancel_scope.cancel()


async def test_forged_task_does_not_burn_the_real_clients_nonce(
    hub: MemoryHub, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    victim, forger = identity(CLIENT), identity(OTHER)
    now = wall()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        async with hub.join(forger.peer_id) as net:
            values = inputs()
            real = signed_task(victim, values, now_ms=now(), nonce=b"\x05" * 16)
            # Same client key and nonce, signed by someone else: must not reach the cache.
            fake = real.to_wire()
            fake["sig"] = forger.sign(b"anything").ljust(64, b"\x00")[:64]
            payload = canonical.encode(
                {
                    "inputs": canonical.decode(request_bytes(real, values))["inputs"],
                    "kind": "task",
                    "task": fake,
                }
            )
            assert (await _error_code(net, node, payload)).code == "bad-signature"
            outputs, _ = check_response(
                await _send(net, node, request_bytes(real, values)), task=real, worker=node.peer_id
            )
            assert outputs
        nursery.cancel_scope.cancel()


async def test_garbage_closes_the_stream_and_node_keeps_serving(
    hub: MemoryHub, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        async with hub.join(identity(CLIENT).peer_id) as net:
            for garbage in (b"\xc1", b"not msgpack at all", b"\x92\x01"):
                with pytest.raises(PeerUnavailable):
                    await _send(net, node, garbage)
            # Valid msgpack of the wrong shape is not garbage: it gets "malformed".
            assert (await _error_code(net, node, canonical.encode({"kind": "x"}))).code == (
                "malformed"
            )
            await _valid_task_succeeds(net, node, CLIENT, b"\x03" * 16)
        nursery.cancel_scope.cancel()


async def test_full_queue_answers_busy_with_retry_after(
    hub: MemoryHub, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()
    runner = FakeRunner(gate=gate)
    now = wall()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, runner, tmp_path, max_queue=2)
        nets = []
        for n in (CLIENT, OTHER, 52):
            nets.append(await nursery.start(_joined, hub, n))
        answers: list[bytes] = []

        async def send(n: int, net: MemoryNetwork) -> None:
            values = inputs(float(n))
            task = signed_task(identity(n), values, now_ms=now(), nonce=bytes([n]) * 16)
            answers.append(await _send(net, node, request_bytes(task, values)))

        async with trio.open_nursery() as inner:
            inner.start_soon(send, CLIENT, nets[0])
            inner.start_soon(send, OTHER, nets[1])
            await trio.testing.wait_all_tasks_blocked()
            # Admitted and handed to the runner (their turn came at once), which
            # holds them behind its own gate: in flight and running.
            assert (node.status().in_flight, node.status().running) == (2, 2)
            await send(52, nets[2])
            busy = decode_response(answers[-1])
            assert isinstance(busy, ErrorReply) and busy.code == "busy"
            assert busy.retry_after_ms > 0
            gate.set()
            await trio.testing.wait_all_tasks_blocked()
            # They compute now.
            assert (node.status().in_flight, node.status().running) == (2, 2)
        assert node.status().in_flight == 0
        assert sum(not isinstance(decode_response(a), ErrorReply) for a in answers) == 2
        nursery.cancel_scope.cancel()


async def test_per_client_cap_keeps_room_for_others(
    hub: MemoryHub, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()
    now = wall()
    async with trio.open_nursery() as nursery:
        node = await start_node(
            nursery, hub, 1, FakeRunner(gate=gate), tmp_path, max_in_flight_per_client=1
        )
        net = await nursery.start(_joined, hub, CLIENT)
        greedy = identity(CLIENT)
        values = inputs()
        first = signed_task(greedy, values, now_ms=now(), nonce=b"\x01" * 16)
        second = signed_task(greedy, values, now_ms=now(), nonce=b"\x02" * 16)
        nursery.start_soon(_send, net, node, request_bytes(first, values))
        await trio.testing.wait_all_tasks_blocked()
        reply = await _error_code(net, node, request_bytes(second, values))
        assert reply.code == "busy" and "client" in reply.message
        gate.set()
        async with hub.join(identity(OTHER).peer_id) as other:
            await _valid_task_succeeds(other, node, OTHER, b"\x09" * 16)
        nursery.cancel_scope.cancel()


async def test_drain_finishes_in_flight_and_refuses_new(
    hub: MemoryHub, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = FakeRunner(compute_s=5.0)
    now = wall()
    results: list[bytes] = []
    answered = trio.Event()
    async with trio.open_nursery() as nursery:
        net = await nursery.start(_joined, hub, CLIENT)
        stop = trio.Event()
        node = await nursery.start(
            functools.partial(serve_node, hub, 1, runner, tmp_path, stop=stop)
        )
        values = inputs()
        task = signed_task(identity(CLIENT), values, now_ms=now(), nonce=b"\x0a" * 16)

        async def send() -> None:
            results.append(await _send(net, node, request_bytes(task, values)))
            answered.set()

        nursery.start_soon(send)
        await runner.started.wait()
        stop.set()  # the node begins draining with one task in flight
        await trio.testing.wait_all_tasks_blocked()
        late = signed_task(identity(OTHER), values, now_ms=now(), nonce=b"\x0b" * 16)
        refused = await _error_code(net, node, request_bytes(late, values))
        assert refused.code == "busy"
        await answered.wait()
        outputs, _ = check_response(results[0], task=task, worker=node.peer_id)
        assert outputs
        nursery.cancel_scope.cancel()


async def _joined(
    hub: MemoryHub,
    n: int,
    *,
    task_status: trio.TaskStatus[MemoryNetwork] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with hub.join(identity(n).peer_id) as net:
        task_status.started(net)
        await trio.sleep_forever()


async def test_busy_answer_does_not_burn_the_nonce(
    hub: MemoryHub, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()
    now = wall()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(gate=gate), tmp_path, max_queue=1)
        net = await nursery.start(_joined, hub, CLIENT)
        values = inputs()
        blocker = signed_task(identity(OTHER), values, now_ms=now(), nonce=b"\x0c" * 16)
        blocker_done = trio.Event()

        async def send_blocker() -> None:
            await _send(net, node, request_bytes(blocker, values))
            blocker_done.set()

        nursery.start_soon(send_blocker)
        await trio.testing.wait_all_tasks_blocked()
        task = signed_task(identity(CLIENT), values, now_ms=now(), nonce=b"\x0d" * 16)
        assert (await _error_code(net, node, request_bytes(task, values))).code == "busy"
        gate.set()
        await blocker_done.wait()
        outputs, _ = check_response(
            await _send(net, node, request_bytes(task, values)), task=task, worker=node.peer_id
        )
        assert outputs
        nursery.cancel_scope.cancel()


async def test_big_task_is_decoded_off_the_loop_and_answered(
    hub: MemoryHub, tmp_path: Path
) -> None:
    # Real clock on purpose: the 4 MiB message is decoded in a worker thread, which
    # MockClock's autojump would mistake for idleness and jump past deadlines.
    from meshfakes import vector

    values = {"x": vector(*([0.5] * (1 << 20)))}  # 4 MiB of float32
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(compute_s=0.0), tmp_path)
        async with hub.join(identity(CLIENT).peer_id) as net:
            task = signed_task(identity(CLIENT), values, now_ms=wall()())
            reply = await _send(net, node, request_bytes(task, values))
            outputs, receipt = check_response(reply, task=task, worker=node.peer_id)
            assert outputs["out_x"] == values["x"]
            assert receipt.message.task_id == task.digest
        nursery.cancel_scope.cancel()


async def test_run_node_builds_from_factories_and_drains_on_stop(
    hub: MemoryHub, tmp_path: Path
) -> None:
    # Real clock: run_node's node writes receipts from a worker thread, which
    # MockClock's autojump would take for idleness.
    from mesh.aio.clock import trio_wall_clock
    from mesh.node.config import NodeConfig
    from mesh.node.service import run_node

    runner = FakeRunner(compute_s=0.2)

    async def runner_factory(config: NodeConfig) -> FakeRunner:
        return runner

    config = NodeConfig(identity=identity(1), data_dir=tmp_path / "data", listen=())
    stop = trio.Event()
    done = trio.Event()
    async with trio.open_nursery() as nursery:

        async def main(*, task_status: trio.TaskStatus[Node]) -> None:
            await run_node(
                config,
                network_factory=lambda c: hub.join(c.identity.peer_id),
                runner_factory=runner_factory,
                stop=stop,
                task_status=task_status,
            )
            done.set()

        node: Node = await nursery.start(main)
        assert (tmp_path / "data" / "receipts.log").exists()
        net = await nursery.start(_joined, hub, CLIENT)
        values = inputs()
        # run_node's node reads the real wall clock (no injected offset).
        task = signed_task(identity(CLIENT), values, now_ms=trio_wall_clock()())
        answers: list[bytes] = []

        async def send() -> None:
            answers.append(await _send(net, node, request_bytes(task, values)))

        nursery.start_soon(send)
        with trio.fail_after(10):
            await runner.started.wait()
        stop.set()
        with trio.fail_after(10):
            await done.wait()  # returned only after the in-flight task was answered
        assert len(answers) == 1
        check_response(answers[0], task=task, worker=node.peer_id)
        nursery.cancel_scope.cancel()
