"""The executor on trio with a fake clock: batching, errors, queue numbers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch
import trio
import trio.testing

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InternalError, InvalidInput, UnknownModel
from mesh.runtime.convert import from_torch
from mesh.runtime.executor import Execution, Executor
from mesh.runtime.output import ModelOutput
from mesh.runtime.registry import LoadedModel, load_model
from mesh.runtime.zoo import Zoo

pytestmark = pytest.mark.component

_MLP: list[LoadedModel] = []


def mlp() -> LoadedModel:
    if not _MLP:
        _MLP.append(load_model(Zoo.builtin().manifest("tiny-mlp"), device="cpu"))
    return replace(_MLP[0])  # a shallow copy whose handler a test may swap


def x(seed: int, rows: int = 2) -> Tensor:
    return from_torch(torch.randn(rows, 32, generator=torch.Generator().manual_seed(seed)))


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def _run_all(executor: Executor, root: bytes, count: int) -> list[Execution]:
    results: list[Execution | None] = [None] * count

    async def one(i: int) -> None:
        results[i] = await executor.run(root, {"x": x(i)}, {})

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
    return [r for r in results if r is not None]


async def test_concurrent_tasks_share_one_forward_pass(autojump_clock: Any) -> None:
    model = mlp()
    executor = Executor([model], max_batch=16, max_wait_ms=5)
    async with executor.running():
        results = await _run_all(executor, model.model_root, 5)
    assert [r.batch_size for r in results] == [5] * 5
    assert all(r.runtime["batch_size"] == 5 and r.runtime["batch_invariant"] for r in results)
    for i, r in enumerate(results):  # and each equals its run alone
        assert r.outputs == model.run_batch([({"x": x(i)}, {})])[0].outputs
        assert r.commitment == b"" and r.compute_ms > 0


async def test_batches_are_capped_at_max_batch(autojump_clock: Any) -> None:
    model = mlp()
    executor = Executor([model], max_batch=8, max_wait_ms=5)
    async with executor.running():
        results = await _run_all(executor, model.model_root, 20)
    assert sorted(r.batch_size for r in results) == [4] * 4 + [8] * 16


async def test_a_lone_client_does_not_wait_for_company(autojump_clock: Any) -> None:
    model = mlp()
    executor = Executor([model], max_batch=16, max_wait_ms=7)
    async with executor.running():
        for i in range(3):  # one task at a time, as a sequential client sends them
            start = trio.current_time()
            result = await executor.run(model.model_root, {"x": x(i)}, {})
            assert trio.current_time() - start == 0.0
            assert result.batch_size == 1


async def test_under_concurrent_load_a_task_waits_max_wait_for_company(
    autojump_clock: Any,
) -> None:
    model = mlp()
    executor = Executor([model], max_batch=16, max_wait_ms=7)
    async with executor.running():
        assert {r.batch_size for r in await _run_all(executor, model.model_root, 5)} == {5}
        start = trio.current_time()
        result = await executor.run(model.model_root, {"x": x(9)}, {})
        assert trio.current_time() - start == pytest.approx(0.007)
        # It waited alone, so the lane is back to running lone tasks at once.
        start = trio.current_time()
        await executor.run(model.model_root, {"x": x(10)}, {})
        assert trio.current_time() - start == 0.0
    assert result.batch_size == 1


async def test_unknown_model_and_bad_input_are_refused_before_queueing() -> None:
    model = mlp()
    executor = Executor([model])
    async with executor.running():
        with pytest.raises(UnknownModel):
            await executor.run(b"\x00" * 32, {"x": x(0)}, {})
        with pytest.raises(InvalidInput):
            await executor.run(model.model_root, {"x": from_torch(torch.zeros(1, 3))}, {})
    assert executor.queue_depth() == 0


class _Scripted:
    """A handler that runs a test's function on each batch."""

    def __init__(self, real: Any, action: Callable[[list[tuple[Values, dict[str, int]]]], None]):
        self.real, self.action, self.threads = real, action, set[int]()

    def validate(self, inputs: Values, params: dict[str, int]) -> None:
        self.real.validate(inputs, params)

    def run_batch(self, items: list[tuple[Values, dict[str, int]]]) -> list[ModelOutput]:
        self.threads.add(threading.get_ident())
        self.action(items)
        return list(self.real.run_batch(items))


async def test_a_failing_batch_fails_its_tasks_only(autojump_clock: Any) -> None:
    model = mlp()
    poison = x(666)

    def explode_on_poison(items: list[tuple[Values, dict[str, int]]]) -> None:
        if any(inputs["x"] == poison for inputs, _ in items):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    handler = _Scripted(model.handler, explode_on_poison)
    model.handler = handler  # type: ignore[assignment]
    executor = Executor([model], max_batch=4, max_wait_ms=5)
    outcomes: list[str] = []

    async def submit(value: Tensor) -> None:
        try:
            await executor.run(model.model_root, {"x": value}, {})
            outcomes.append("ok")
        except InternalError as exc:
            assert "tiny-mlp failed" in str(exc)
            outcomes.append("internal")

    async with executor.running():
        async with trio.open_nursery() as nursery:
            for value in (x(1), poison, x(2)):
                nursery.start_soon(submit, value)
        assert sorted(outcomes) == ["internal"] * 3
        outcomes.clear()
        results = await _run_all(executor, model.model_root, 3)  # still serving
    assert len(results) == 3
    assert threading.get_ident() not in handler.threads  # torch never ran on the event loop


async def test_queue_depth_counts_queued_and_running_tasks() -> None:
    model = mlp()
    started, release = threading.Event(), threading.Event()

    def block(items: list[tuple[Values, dict[str, int]]]) -> None:
        started.set()
        release.wait(timeout=30)

    model.handler = _Scripted(model.handler, block)  # type: ignore[assignment]
    executor = Executor([model], max_batch=2, max_wait_ms=0, max_queue=10)
    assert executor.queue_capacity() == 10
    async with executor.running(), trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(executor.run, model.model_root, {"x": x(i)}, {})
        await trio.to_thread.run_sync(started.wait)
        assert executor.queue_depth() == 3  # two running, one queued
        release.set()
    assert executor.queue_depth() == 0


async def test_a_cancelled_queued_task_is_dropped(autojump_clock: Any) -> None:
    model = mlp()
    ran: list[int] = []
    model.handler = _Scripted(model.handler, lambda items: ran.append(len(items)))  # type: ignore[assignment]
    executor = Executor([model], max_batch=8, max_wait_ms=50)
    async with executor.running():
        # Concurrent load first, so the next lone task lingers in the queue.
        await _run_all(executor, model.model_root, 2)
        with trio.move_on_after(0.01):
            await executor.run(model.model_root, {"x": x(0)}, {})
        assert executor.queue_depth() == 0
        result = await executor.run(model.model_root, {"x": x(1)}, {})
    assert result.batch_size == 1 and ran == [2, 1]


async def test_generation_is_the_same_alone_and_batched(autojump_clock: Any) -> None:
    model = load_model(Zoo.builtin().manifest("tiny-gpt"), device="cpu")
    executor = Executor([model], max_batch=8, max_wait_ms=5)
    task: tuple[Values, dict[str, int]] = (
        {"prompt": ["batch me"]},
        {"seed": 3, "max_tokens": 16, "temperature_milli": 800, "top_k": 30},
    )
    async with executor.running():
        alone = await executor.run(model.model_root, *task)
        results: dict[int, Execution] = {}

        async def one(i: int) -> None:
            inputs, params = (
                task if i == 2 else ({"prompt": ["p" * i]}, {"seed": i, "max_tokens": 4 + i})
            )
            results[i] = await executor.run(model.model_root, inputs, params)

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(one, i)
    assert alone.batch_size == 1 and results[2].batch_size == 5
    assert results[2].outputs == alone.outputs
    assert results[2].commitment == alone.commitment
