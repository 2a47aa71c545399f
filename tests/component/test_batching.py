"""Batched tasks over the memory network: one task and one receipt for many items.

The node admits, replay-checks and receipts a batch once and runs every item
through its runner; the client gets one verified result per item, each
provable alone; a batch that fails on one worker is retried elsewhere whole.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio
from meshfakes import ROOT_A, FakeRunner, inputs, open_client, start_node

from mesh.client.async_client import AsyncClient
from mesh.core.batch import verify_batch_item
from mesh.core.receipt_chain import check_chain
from mesh.errors import InvalidInput, OutputMismatch
from mesh.net.interface import TASK_PROTOCOL
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

CLIENT = 40


async def test_a_batch_is_one_task_one_receipt_and_every_item_verifies_alone(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        runner = FakeRunner()
        node = await start_node(nursery, hub, 1, runner, tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        items = [inputs(float(i)) for i in range(10)]
        results = await client.run_batch(ROOT_A, items, timeout=10)
        assert [r.outputs["out_x"] for r in results] == [i["x"] for i in items]
        assert len({r.receipt.digest for r in results}) == 1  # one receipt for the batch
        assert runner.ran == 10  # every item ran
        assert hub.served_by_protocol[node.peer_id, TASK_PROTOCOL] == 1  # one round trip
        for r in results:
            r.verify()  # each item alone: receipt, task, its outputs and inputs
            assert r.proof is not None and r.proof.count == 10
        with pytest.raises(OutputMismatch):
            first, second = results[0], results[1]
            assert first.proof is not None
            verify_batch_item(
                first.receipt, task=first.task, outputs=second.outputs, proof=first.proof
            )
        log = (tmp_path / "node1" / "receipts.log").read_bytes()
        assert check_chain(log, source="t", worker=results[0].receipt.message.worker).count == 1
        nursery.cancel_scope.cancel()


async def test_map_sends_batches_and_keeps_item_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        nodes = [await start_node(nursery, hub, n, FakeRunner(), tmp_path) for n in (1, 2)]
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        items = [inputs(float(i)) for i in range(10)]
        results = await client.map(ROOT_A, items, batch_size=4, concurrency=2, timeout=10)
        assert [r.outputs["out_x"] for r in results] == [i["x"] for i in items]
        assert sum(hub.served_by_protocol[n.peer_id, TASK_PROTOCOL] for n in nodes) == 3
        assert [r.proof.count for r in results if r.proof] == [4] * 8 + [2] * 2
        nursery.cancel_scope.cancel()


async def test_a_failed_batch_is_retried_elsewhere_whole(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        bad = await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        good = await start_node(nursery, hub, 2, FakeRunner(), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        assert len(await client._discovery.candidates(ROOT_A, timeout=5, fresh=True)) == 2
        client._book.success(bad.peer_id, 1.0)  # tried first
        client._book.success(good.peer_id, 500.0)
        hub.kill(bad.peer_id)
        results = await client.run_batch(ROOT_A, [inputs(1.0), inputs(2.0)], timeout=20)
        assert {r.worker for r in results} == {good.peer_id}
        assert all(r.attempts == 2 for r in results)
        nursery.cancel_scope.cancel()


async def test_an_invalid_item_fails_its_batch_and_map_says_which(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        client: AsyncClient = await nursery.start(functools.partial(open_client, hub, CLIENT))
        items = [inputs(1.0), {"bad": ["x"]}, inputs(3.0)]
        with pytest.raises(InvalidInput, match="item 1"):
            await client.run_batch(ROOT_A, items, timeout=10)
        nursery.cancel_scope.cancel()
