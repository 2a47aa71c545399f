"""Batched tasks through the verification modes (mesh.client.batch_verify).

A batch is audited or replicated as a whole; items on which independent
workers agree are confirmed, the others are settled alone by the one-task
verifier, and a batch worker found wrong is excluded. No wrong item is returned.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import trio
from meshfakes import ROOT_A, FakeRunner, inputs, open_client, start_node

from mesh.client.async_client import AsyncClient, ClientConfig
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

CLIENT = 40


async def _client(nursery: trio.Nursery, hub: MemoryHub, **config: Any) -> AsyncClient:
    client: AsyncClient = await nursery.start(
        functools.partial(open_client, hub, CLIENT, config=ClientConfig(**config))
    )
    return client


def _honest(i: int) -> Any:
    return inputs(float(i))["x"]


async def test_redundant_batches_return_no_wrong_item_and_confirm_on_distinct_workers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        nodes = {}
        for n, lie in ((1, ""), (2, "perturb"), (3, ""), (4, "")):
            nodes[n] = await start_node(nursery, hub, n, FakeRunner(), tmp_path, lie=lie)
        client = await _client(nursery, hub, verify="redundant")
        # Node 1 looks far better than the rest: only the exclusion of workers
        # already asked keeps both replicas of a batch from going to it.
        client._book.success(nodes[1].peer_id, 1.0)
        for n in (2, 3, 4):
            client._book.success(nodes[n].peer_id, 500.0)
        results = await client.map(ROOT_A, [inputs(float(i)) for i in range(24)], batch_size=6)
        liar = nodes[2].peer_id
        for i, result in enumerate(results):
            assert result.outputs["out_x"] == _honest(i)  # never a wrong item
            report = result.verification
            assert report is not None and report.checked and report.confirmed_by
            assert result.worker not in report.confirmed_by
            assert result.worker != liar
        assert liar in client.reputation.caught()
        nursery.cancel_scope.cancel()


async def test_an_audited_batch_is_rerun_whole_on_an_independent_worker(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        for n in (1, 2):
            await start_node(nursery, hub, n, FakeRunner(), tmp_path)
        client = await _client(nursery, hub, verify="audit", audit_rate=1.0)
        results = await client.run_batch(ROOT_A, [inputs(float(i)) for i in range(5)])
        assert len({r.receipt.digest for r in results}) == 1
        for r in results:
            r.verify()
            report = r.verification
            assert report is not None and report.checked and report.extra_runs == 1
            assert report.confirmed_by and r.worker not in report.confirmed_by
        unchecked = await client.run_batch(ROOT_A, [inputs(1.0)], audit_rate=0.0)
        assert unchecked[0].verification is not None
        assert not unchecked[0].verification.checked
        nursery.cancel_scope.cancel()


async def test_a_verified_map_keeps_a_task_per_item_unless_asked_to_batch(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        for n in (1, 2, 3):
            await start_node(nursery, hub, n, FakeRunner(), tmp_path)
        client = await _client(nursery, hub, verify="redundant")
        # ROOT_A is no zoo model: map would not batch it by itself anyway, so ask.
        batched = await client.map(ROOT_A, [inputs(float(i)) for i in range(4)], batch_size=2)
        assert all(r.proof is not None for r in batched)
        single = await client.map(ROOT_A, [inputs(float(i)) for i in range(4)])
        assert all(r.proof is None for r in single)
        nursery.cancel_scope.cancel()
