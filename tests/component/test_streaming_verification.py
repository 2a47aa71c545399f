"""Streams go through the verification layer as run() does (memory network, fake clock).

The workers are :class:`verifyfakes.FakeGenRunner` language models (tokens a pure
function of the inputs, commitments, commitment checks); a node started with
``lie="perturb"`` streams the true tokens and then signs other ones.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import trio
from meshfakes import ROOT_A, inputs, open_client, start_node
from verifyfakes import FakeGenRunner, fake_tokens

from mesh.client.async_client import AsyncClient, ClientConfig
from mesh.core.partials import token_list
from mesh.core.tensors import Tensor
from mesh.node.service import Node
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

CLIENT = 40


async def _client(nursery: trio.Nursery, hub: MemoryHub, **config: Any) -> AsyncClient:
    client: AsyncClient = await nursery.start(
        functools.partial(open_client, hub, CLIENT, config=ClientConfig(**config))
    )
    return client


def _prefer(client: AsyncClient, *nodes: Node) -> None:
    """Make ``nodes`` look best to ``client``, in that order (lower latency first)."""
    for rank, node in enumerate(nodes):
        client._book.success(node.peer_id, 1.0 + 10 * rank)


def _ids(outputs: Any) -> list[int]:
    ids = outputs["token_ids"]
    assert isinstance(ids, Tensor)
    return token_list(ids)


async def test_an_audited_stream_gives_its_tokens_then_the_checked_result(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        runners = [FakeGenRunner() for _ in range(3)]
        nodes = [
            await start_node(nursery, hub, n, r, tmp_path)  # type: ignore[arg-type]
            for n, r in enumerate(runners, start=1)
        ]
        client = await _client(nursery, hub, verify="audit", audit_rate=1.0)
        _prefer(client, *nodes)
        async with client.stream(ROOT_A, inputs(), timeout=20, seed=5) as stream:
            chunks = [chunk async for chunk in stream]
        result = stream.result
        assert (
            [i for c in chunks for i in c.token_ids]
            == fake_tokens(inputs())
            == _ids(result.outputs)
        )
        assert {c.worker for c in chunks} == {nodes[0].peer_id} == {result.worker}
        # The same audit as run() does: two commitment checks on the other workers.
        report = result.verification
        assert report is not None and report.mode == "audit" and report.checked
        assert report.checks == 2
        assert set(report.confirmed_by) == {nodes[1].peer_id, nodes[2].peer_id}
        nursery.cancel_scope.cancel()


async def test_a_worker_that_signs_other_tokens_than_it_streamed_is_caught_and_passed_over(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        liar = await start_node(nursery, hub, 1, FakeGenRunner(), tmp_path, lie="perturb")  # type: ignore[arg-type]
        honest = await start_node(nursery, hub, 2, FakeGenRunner(), tmp_path)  # type: ignore[arg-type]
        client = await _client(nursery, hub, verify="signature")
        _prefer(client, liar, honest)
        async with client.stream(ROOT_A, inputs(), timeout=20) as stream:
            chunks = [chunk async for chunk in stream]
        result = stream.result
        # The liar streamed the true tokens, then its receipt bound others: its own
        # stream gave it away. The honest worker reproduced what was given; the
        # stream went on with nothing given twice.
        assert result.worker == honest.peer_id and result.attempts == 2
        assert [i for c in chunks for i in c.token_ids] == _ids(result.outputs)
        assert client.reputation.excluded(liar.peer_id)
        nursery.cancel_scope.cancel()
