"""The blocking Client: a trio loop in a background thread, over the memory network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from meshfakes import (
    ROOT_A,
    ROOT_B,
    FakeRunner,
    TokenRunner,
    fake_text,
    fake_tokens,
    identity,
    inputs,
    start_node,
    wall,
)

from mesh.client.async_client import AsyncClient
from mesh.client.sync_client import Client
from mesh.core.partials import token_list
from mesh.core.receipts import verify_receipt
from mesh.core.tensors import Tensor
from mesh.errors import DeadlineExceeded, MeshError, NoPeersAvailable
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component


def _factory(tmp_path: Path, nodes: int, runners: list[FakeRunner] | None = None):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def factory() -> AsyncIterator[AsyncClient]:
        hub = MemoryHub()
        async with trio.open_nursery() as nursery:
            for n in range(1, nodes + 1):
                runner = runners[n - 1] if runners else FakeRunner(compute_s=0.0)
                await start_node(nursery, hub, n, runner, tmp_path)
            ident = identity(40)
            async with (
                hub.join(ident.peer_id) as net,
                AsyncClient(net, identity=ident, wall_clock=wall()) as client,
            ):
                yield client
            nursery.cancel_scope.cancel()

    return factory


def test_blocking_run_map_peers_and_errors(tmp_path: Path) -> None:
    with Client(factory=_factory(tmp_path, 2)) as client:
        result = client.run(ROOT_A, inputs(), seed=1)
        assert result.outputs["out_x"] == inputs()["x"]
        assert result.task.message.params == {"seed": 1}
        results = client.map(ROOT_A, [inputs(float(i)) for i in range(6)], concurrency=3)
        assert [r.outputs["out_x"] for r in results] == [inputs(float(i))["x"] for i in range(6)]
        assert len(client.peers()) == 2
        with pytest.raises(DeadlineExceeded, match="no provider"):
            client.run(ROOT_B, inputs(), timeout=0.3)
    with pytest.raises(MeshError, match="closed"):
        client.run(ROOT_A, inputs())


def test_a_failing_start_raises_in_the_caller(tmp_path: Path) -> None:
    @asynccontextmanager
    async def broken() -> AsyncIterator[AsyncClient]:
        raise NoPeersAvailable("none of 1 bootstrap peers answered")
        yield  # type: ignore[unreachable]

    with pytest.raises(NoPeersAvailable, match="bootstrap"):
        Client(factory=broken)


PROMPT = {"prompt": ["Hi there"]}
PARAMS = {"seed": 3, "max_tokens": 6}


def test_blocking_stream_gives_chunks_then_the_verified_result(tmp_path: Path) -> None:
    runner = TokenRunner(step_s=0.001)
    with Client(factory=_factory(tmp_path, 1, [runner])) as client:
        stream = client.stream(ROOT_A, PROMPT, **PARAMS)
        chunks = list(stream)
        expected = fake_tokens(PROMPT, PARAMS)
        assert [i for c in chunks for i in c.token_ids] == expected
        assert "".join(c.text for c in chunks) == fake_text(expected)
        result = stream.result
        verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
        ids = result.outputs["token_ids"]
        assert isinstance(ids, Tensor) and token_list(ids) == expected
        assert result.task.digest == stream.task_id


def test_leaving_a_blocking_stream_early_stops_its_worker(tmp_path: Path) -> None:
    # Tokens slower than the node's partial pace (20 ms): the first one after the
    # stream closed is sent alone and finds the requester gone mid-task.
    runner = TokenRunner(step_s=0.05, hold_after=2)
    with Client(factory=_factory(tmp_path, 1, [runner])) as client:
        token = client._token
        assert token is not None
        with client.stream(ROOT_A, PROMPT, **PARAMS) as stream:
            for chunk in stream:
                if sum(1 for _ in chunk.token_ids):
                    break  # leave with the worker held mid-task
        trio.from_thread.run_sync(runner.hold.set, trio_token=token)

        async def stopped() -> None:
            with trio.fail_after(10):
                await runner.stopped.wait()

        trio.from_thread.run(stopped, trio_token=token)
        assert runner.cancelled == 1 and runner.ran == 0
