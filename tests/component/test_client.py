"""AsyncClient over the memory network on a fake clock: results, retries, spreading."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio
from meshfakes import ROOT_A, ROOT_B, FakeRunner, inputs, open_client, start_node

from mesh.client.async_client import AsyncClient, ClientConfig
from mesh.client.retry import RetryPolicy
from mesh.core import canonical
from mesh.core.receipts import verify_receipt
from mesh.errors import DeadlineExceeded, VerificationError
from mesh.net.interface import TASK_PROTOCOL, Inbound, PeerAddr
from mesh.node.service import Node
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

CLIENT = 40


def _tamper_outputs(node: Node) -> None:
    """Make ``node`` answer with outputs that differ from what its receipt signs."""
    honest = node._handler.handle

    async def lying(request: Inbound) -> bytes:
        answer = canonical.decode(await honest(request))
        if answer.get("kind") == "result":
            answer["outputs"] = {"out_x": ["forged"]}
        return canonical.encode(answer)

    node._network.set_request_handler(TASK_PROTOCOL, lying)


async def test_run_returns_verified_result(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        result = await client.run(ROOT_A.hex(), inputs(), timeout=10, seed=3)
        assert result.worker == node.peer_id and result.attempts == 1
        assert result.outputs["out_x"] == inputs()["x"]
        verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
        assert result.task.message.params == {"seed": 3}
        assert result.latency_ms == pytest.approx(10.0)  # the fake runner's 10 ms, virtual
        nursery.cancel_scope.cancel()


async def test_a_dial_is_not_counted_in_the_peers_latency(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Rating a first task's dial as the peer's latency made every peer the client
    # was not yet connected to (all but its bootstrap peers) look a handshake
    # slower, and selection never went back to them.
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        network = client._network
        dial = network.connect

        async def slow_dial(peer: PeerAddr, *, timeout: float) -> None:  # noqa: ASYNC109
            await trio.sleep(1.0)
            await dial(peer, timeout=timeout)

        network.connect = slow_dial  # type: ignore[method-assign]
        network.connected_peers = list  # type: ignore[method-assign]  # connected to none yet
        started = trio.current_time()
        result = await client.run(ROOT_A.hex(), inputs(), timeout=10)
        assert trio.current_time() - started >= 1.0  # the dial happened, and was waited for
        assert result.latency_ms == pytest.approx(10.0)  # the runner's 10 ms alone
        assert client._book.stats(result.worker).rtt_ms == pytest.approx(10.0)
        nursery.cancel_scope.cancel()


async def test_busy_peer_is_retried_on_another(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        busy = await start_node(
            nursery, hub, 1, FakeRunner(gate=trio.Event()), tmp_path, max_queue=1
        )
        free = await start_node(nursery, hub, 2, FakeRunner(), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        # Occupy the busy node's only slot from another client.
        other: AsyncClient = await nursery.start(open_client, hub, CLIENT + 1)
        task = other.build_task(ROOT_A, inputs(), target=busy.peer_id)
        nursery.start_soon(
            functools.partial(other.run_task, task, inputs(), deadline=100.0, target=busy.peer_id)
        )
        await trio.testing.wait_all_tasks_blocked()
        assert busy.status().in_flight == 1
        # Make the busy node look best so the client tries it first.
        client._book.success(busy.peer_id, 1.0)
        client._book.success(free.peer_id, 500.0)
        result = await client.run(ROOT_A, inputs(), timeout=10)
        assert result.worker == free.peer_id and result.attempts == 2
        assert busy.status().answered.get("busy") == 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("fault", ["killed", "frozen", "dropping", "slow", "lying"])
async def test_failed_peer_is_retried_elsewhere_within_deadline(
    fault: str, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        runner = FakeRunner(compute_s=1000.0 if fault == "slow" else 0.01)
        bad = await start_node(nursery, hub, 1, runner, tmp_path)
        good = await start_node(nursery, hub, 2, FakeRunner(), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        client._book.success(bad.peer_id, 1.0)  # bad looks best: it is tried first
        client._book.success(good.peer_id, 500.0)
        # The client knows both (their live records) before the fault.
        assert len(await client._discovery.candidates(ROOT_A, timeout=5, fresh=True)) == 2
        if fault == "killed":
            hub.kill(bad.peer_id)
        elif fault == "frozen":
            hub.freeze(bad.peer_id)
        elif fault == "dropping":
            hub.drop(bad.peer_id)
        else:
            _tamper_outputs(bad)
        start = trio.current_time()
        result = await client.run(ROOT_A, inputs(), timeout=20)
        elapsed = trio.current_time() - start
        assert result.worker == good.peer_id and result.attempts == 2
        assert elapsed < 20
        if fault in ("frozen", "dropping", "slow"):
            # The hung attempt got half the remaining time, no more.
            assert elapsed == pytest.approx(10.0 + 0.01, abs=0.02)
        if fault == "lying":
            # Caught: left out by this client's reputation; its health is not the issue.
            assert client._reputation.excluded(bad.peer_id)
        else:
            assert client._network.consecutive_failures(bad.peer_id) == 1
            assert bad.peer_id not in [p.peer_id for p in client._network.known_peers()]
        # Next time the bad peer is not chosen first.
        again = await client.run(ROOT_A, inputs(), timeout=20)
        assert again.attempts == 1 and again.worker == good.peer_id
        nursery.cancel_scope.cancel()


async def test_only_a_lying_peer_raises_verification_error(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        liar = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        _tamper_outputs(liar)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        with pytest.raises(VerificationError):
            await client.run(ROOT_A, inputs(), timeout=10)
        nursery.cancel_scope.cancel()


async def test_all_frozen_raises_deadline_exceeded_on_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        for n in (1, 2):
            node = await start_node(nursery, hub, n, FakeRunner(), tmp_path)
            hub.freeze(node.peer_id)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        start = trio.current_time()
        with pytest.raises(DeadlineExceeded):
            await client.run(ROOT_A, inputs(), timeout=8)
        assert trio.current_time() - start == pytest.approx(8.0)
        nursery.cancel_scope.cancel()


async def test_nobody_serves_the_model_is_a_deadline_error_at_the_deadline(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        start = trio.current_time()
        # Providers may still appear (records lag a node's start): the client
        # waits for them until its deadline, then says the deadline ran out.
        with pytest.raises(DeadlineExceeded, match="no provider"):
            await client.run(ROOT_B, inputs(), timeout=3)
        assert trio.current_time() - start == pytest.approx(3.0)
        nursery.cancel_scope.cancel()


async def test_map_spreads_over_peers_and_keeps_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        nodes = [
            await start_node(nursery, hub, n, FakeRunner(compute_s=0.5), tmp_path)
            for n in (1, 2, 3)
        ]
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        many = [inputs(float(i)) for i in range(12)]
        results = await client.map(ROOT_A, many, concurrency=6, timeout=30)
        assert [r.outputs["out_x"] for r in results] == [m["x"] for m in many]
        workers = {r.worker for r in results}
        assert len(workers) > 1
        assert sum(hub.served_by_protocol[n.peer_id, TASK_PROTOCOL] for n in nodes) == 12
        nursery.cancel_scope.cancel()


async def test_retry_budget_is_bounded(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    config = ClientConfig(retry=RetryPolicy(max_attempts=2))
    async with trio.open_nursery() as nursery:
        nodes = [await start_node(nursery, hub, n, FakeRunner(), tmp_path) for n in (1, 2, 3)]
        client: AsyncClient = await nursery.start(
            functools.partial(open_client, hub, CLIENT, config=config)
        )
        # The client holds their live records, then all three die.
        assert len(await client._discovery.candidates(ROOT_A, timeout=5, fresh=True)) == 3
        for node in nodes:
            hub.kill(node.peer_id)
        with pytest.raises(Exception) as info:
            await client.run(ROOT_A, inputs(), timeout=10)
        # Two attempts: the dead peers are no longer connected, so each attempt is a
        # dial that fails (as a killed process refuses TCP) and sends nothing.
        network = client._network
        assert network.dials == 2 and network.sent_by_protocol[TASK_PROTOCOL] == 0  # type: ignore[attr-defined]
        assert "unreachable" in str(info.value) or "not reachable" in str(info.value)
        nursery.cancel_scope.cancel()


async def test_a_lone_busy_peer_is_retried_after_its_retry_after(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, FakeRunner(compute_s=2.0), tmp_path, max_queue=1)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        other: AsyncClient = await nursery.start(open_client, hub, CLIENT + 1)
        nursery.start_soon(functools.partial(other.run, ROOT_A, inputs(), timeout=30))
        await trio.testing.wait_all_tasks_blocked()
        assert node.status().in_flight == 1
        start = trio.current_time()
        result = await client.run(ROOT_A, inputs(), timeout=30)
        assert result.worker == node.peer_id and result.attempts >= 2
        assert node.status().answered["busy"] == result.attempts - 1
        # It came back no sooner than the busy answers asked (500 ms each, no rate yet).
        assert trio.current_time() - start >= 0.5 * (result.attempts - 1)
        nursery.cancel_scope.cancel()
