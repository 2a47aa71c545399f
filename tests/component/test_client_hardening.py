"""The client against workers that refuse what they should run, on a fake clock.

A client checks inputs against the manifest before sending; a worker answering
``invalid-input`` is then at fault: the task goes elsewhere, and the worker is
counted against once another worker ran the task. ``map`` keeps each item's
outcome and never cancels the others. A deadline that runs out is a deadline
error, even while no provider is known yet.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from meshfakes import ROOT_A, FakeRunner, inputs, open_client, start_node

from mesh.client.async_client import AsyncClient
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput, MeshError
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

CLIENT = 41


@dataclass
class RefusingRunner(FakeRunner):
    """A worker that answers ``invalid-input`` to every task (lying, or broken)."""

    def validate(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> None:
        raise InvalidInput("this worker refuses everything")


async def test_invalid_input_from_one_worker_goes_elsewhere_and_counts_against_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        liar = await start_node(nursery, hub, 1, RefusingRunner(), tmp_path)
        honest = await start_node(nursery, hub, 2, FakeRunner(), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        # Concurrent tasks spread over both workers (in-flight tasks count as load).
        results = await client.map(
            ROOT_A, [inputs(float(n)) for n in range(8)], concurrency=8, timeout=10
        )
        assert {r.worker for r in results} == {honest.peer_id}
        assert sum(r.attempts - 1 for r in results) >= 1  # the liar was tried...
        # ...and counted against once the honest worker ran the same task.
        assert client._network.consecutive_failures(liar.peer_id) >= 1  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_a_task_every_worker_refuses_is_raised_after_a_quorum(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        for n in (1, 2, 3):
            await start_node(nursery, hub, n, RefusingRunner(), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        with pytest.raises(InvalidInput):
            await client.run(ROOT_A, inputs(), timeout=10)
        # Two distinct workers agreed: the task is wrong, nobody is blamed, no third try.
        assert client._network.requests_sent == 2  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_map_keeps_every_items_outcome_and_cancels_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, RefusingRunner(), tmp_path)
        await start_node(nursery, hub, 2, FakeRunner(compute_s=0.2), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        many = [inputs(float(i)) for i in range(10)]
        # One refusing worker fails no item: each is retried on the honest one.
        results = await client.map(ROOT_A, many, concurrency=4, timeout=30)
        assert [r.outputs["out_x"] for r in results] == [m["x"] for m in many]
        # Items that fail stay in place beside those that succeed.
        mixed = [inputs(1.0), {"bad": inputs()["x"]}, inputs(3.0)]
        outcomes = await client.map(ROOT_A, mixed, timeout=30, return_errors=True)
        assert not isinstance(outcomes[0], MeshError)
        assert isinstance(outcomes[1], InvalidInput)
        assert not isinstance(outcomes[2], MeshError)
        # The default raises the first error, after every item finished.
        served_before = sum(hub.requests_served.values())
        with pytest.raises(InvalidInput):
            await client.map(ROOT_A, mixed, timeout=30)
        assert sum(hub.requests_served.values()) - served_before >= 2  # the others ran
        nursery.cancel_scope.cancel()


async def test_inputs_that_do_not_fit_the_manifest_never_leave_the_client(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    nan_row = Tensor("float32", (1, 32), struct.pack("<32f", *([math.nan] + [0.0] * 31)))
    async with trio.open_nursery() as nursery:
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        cases: list[tuple[Values, dict[str, int], str]] = [
            ({"x": nan_row}, {}, "NaN"),
            ({"x": Tensor("float32", (1, 31), bytes(124))}, {}, "shape"),
            ({"x": Tensor("float32", (65, 32), bytes(65 * 128))}, {}, "at most 64"),
            ({"x": Tensor("float32", (1, 32), bytes(128))}, {"seed": 1}, "no params"),
        ]
        for values, params, message in cases:
            with pytest.raises(InvalidInput, match=message):
                await client.run("tiny-mlp", values, params=params, timeout=5)
        with pytest.raises(InvalidInput, match="max_tokens"):
            await client.run("tiny-gpt", {"prompt": ["hi"]}, max_tokens=100_000, timeout=5)
        with pytest.raises(InvalidInput, match=r"positions|tokens"):
            await client.run("tiny-gpt", {"prompt": ["x" * 400]}, max_tokens=64, timeout=5)
        assert client._network.requests_sent == 0  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()
