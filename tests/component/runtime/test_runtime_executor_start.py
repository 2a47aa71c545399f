"""The executor reports when a task's batch starts, not when the task was queued."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
import torch
import trio
import trio.testing

from mesh.core.values import Values
from mesh.runtime.convert import from_torch
from mesh.runtime.executor import Executor
from mesh.runtime.output import ModelOutput
from mesh.runtime.registry import LoadedModel, load_model
from mesh.runtime.zoo import Zoo

pytestmark = pytest.mark.component


class _Gated:
    """A handler whose batches wait for a threading event (the first one signals it ran)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.running, self.release = threading.Event(), threading.Event()

    def validate(self, inputs: Values, params: dict[str, int]) -> None:
        self.real.validate(inputs, params)

    def run_batch(self, items: list[tuple[Values, dict[str, int]]]) -> list[ModelOutput]:
        self.running.set()
        self.release.wait(timeout=30)
        return list(self.real.run_batch(items))


def _mlp() -> tuple[LoadedModel, _Gated]:
    model = replace(load_model(Zoo.builtin().manifest("tiny-mlp"), device="cpu"))
    gated = _Gated(model.handler)
    model.handler = gated  # type: ignore[assignment]
    return model, gated


def _runner(model: LoadedModel, executor: Executor, started: list[str]) -> Any:
    """A task submitter that records, by name, when each task's batch starts."""
    x = from_torch(torch.zeros(1, 32))

    async def one(name: str) -> None:
        await executor.run(model.model_root, {"x": x}, {}, on_start=lambda: started.append(name))

    return one


async def test_on_start_is_called_when_the_batch_starts_not_when_queued() -> None:
    model, gated = _mlp()
    executor = Executor([model], max_batch=1, max_wait_ms=0)
    started: list[str] = []
    one = _runner(model, executor, started)

    async with executor.running(), trio.open_nursery() as nursery:
        nursery.start_soon(one, "first")
        await trio.to_thread.run_sync(gated.running.wait)  # first's batch is in the thread
        nursery.start_soon(one, "second")
        await trio.testing.wait_all_tasks_blocked()
        # Queued behind the running batch (max_batch=1): not started.
        assert started == ["first"] and executor.queue_depth() == 2
        gated.release.set()
    assert started == ["first", "second"]


async def test_a_task_cancelled_while_queued_never_starts() -> None:
    model, gated = _mlp()
    executor = Executor([model], max_batch=1, max_wait_ms=0)
    started: list[str] = []
    one = _runner(model, executor, started)

    async with executor.running(), trio.open_nursery() as nursery:
        nursery.start_soon(one, "first")
        await trio.to_thread.run_sync(gated.running.wait)
        async with trio.open_nursery() as inner:
            cancel = trio.CancelScope()

            async def doomed() -> None:
                with cancel:
                    await one("cancelled")

            inner.start_soon(doomed)
            await trio.testing.wait_all_tasks_blocked()
            assert executor.queue_depth() == 2  # queued behind the running batch
            cancel.cancel()  # its client gave up while it waited
        nursery.start_soon(one, "after")
        await trio.testing.wait_all_tasks_blocked()
        gated.release.set()
    assert started == ["first", "after"]
