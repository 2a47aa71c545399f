"""The executor: per-model dynamic batching on trio, torch in a worker thread.

Each served model has a lane: a queue of tasks and a loop that takes up to
``max_batch`` of them and runs them as one batch with ``trio.to_thread.run_sync``.
Waiting for company is adaptive: when the lane's previous batch held more than
one task (there is concurrent load), the oldest task may wait up to
``max_wait_ms`` for more; when it held one (a lone client), the task runs at
once instead of paying the wait for nothing. Tasks arriving while a batch runs
queue up and form the next batch either way. One forward pass runs
at a time in the process (a shared limiter): the device is one resource, and
torch's thread count stays what the runtime claim says.

A model that raises fails the tasks of that batch with ``InternalError``; the
lane goes on serving. Admission is the node's: it reads :meth:`Executor.queue_depth`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from mesh.core.model_root import format_root
from mesh.core.values import Values
from mesh.errors import ConfigError, InternalError, MeshError, UnknownModel
from mesh.runtime.device import apply_thread_count
from mesh.runtime.output import ModelOutput
from mesh.runtime.registry import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Execution:
    """The result of one task.

    Attributes:
        outputs: the model's outputs.
        runtime: the runtime claim (device, dtype, torch, flags, batch_size).
        commitment: activation commitment (``b""`` for models without one).
        batch_size: how many tasks shared the forward pass.
        compute_ms: wall time of that batch's forward pass(es), in milliseconds.
    """

    outputs: Values
    runtime: dict[str, str | int | bool]
    commitment: bytes
    batch_size: int
    compute_ms: float


@dataclass(eq=False)
class _Job:
    inputs: Values
    params: dict[str, int]
    enqueued: float
    on_start: Callable[[], None] | None = None
    done: trio.Event = field(default_factory=trio.Event)
    result: Execution | None = None
    error: MeshError | None = None
    cancelled: bool = False


class _Lane:
    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.queue: deque[_Job] = deque()
        self.arrived = trio.Event()
        self.last_batch = 0  # size of the previous batch: >1 means concurrent load


class Executor:
    """Runs tasks on loaded models with dynamic batching."""

    def __init__(
        self,
        models: Sequence[LoadedModel],
        *,
        max_batch: int = 16,
        max_wait_ms: int = 5,
        max_queue: int = 64,
    ) -> None:
        """Args:
        models: the models served, keyed by their model_root.
        max_batch: most tasks in one forward pass.
        max_wait_ms: longest the oldest queued task waits for company.
        max_queue: the queue capacity the node admits against.
        """
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ConfigError("max_batch and max_queue must be >= 1, max_wait_ms >= 0")
        self._lanes = {m.model_root: _Lane(m) for m in models}
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._capacity = max_queue
        self._depth = 0
        self._device = trio.CapacityLimiter(1)

    def queue_depth(self) -> int:
        """Tasks accepted and not finished (queued or running)."""
        return self._depth

    def queue_capacity(self) -> int:
        """The capacity the node should admit against."""
        return self._capacity

    def model(self, model_root: bytes) -> LoadedModel:
        """The loaded model of a root. Raises UnknownModel."""
        lane = self._lanes.get(model_root)
        if lane is None:
            raise UnknownModel(f"this node does not serve model {format_root(model_root)}")
        return lane.model

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
    ) -> Execution:
        """Run one task, batched with concurrent callers of the same model.

        ``on_start`` is called on the trio thread when the task's batch starts.

        Raises:
            UnknownModel: the root is not served here.
            InvalidInput: inputs or params do not fit the model.
            InternalError: the model failed on this task's batch.
        """
        lane = self._lanes.get(model_root)
        if lane is None:
            raise UnknownModel(f"this node does not serve model {format_root(model_root)}")
        lane.model.validate(inputs, params)
        job = _Job(inputs, params, trio.current_time(), on_start)
        lane.queue.append(job)
        lane.arrived.set()
        self._depth += 1
        try:
            await job.done.wait()
        except trio.Cancelled:
            job.cancelled = True  # a queued job is skipped; a running one is discarded
            raise
        finally:
            self._depth -= 1
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    async def run_forever(self) -> None:
        """Run every lane's batching loop until cancelled."""
        async with trio.open_nursery() as nursery:
            for lane in self._lanes.values():
                nursery.start_soon(self._lane_loop, lane)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Executor]:
        """``async with executor.running():`` runs the loops for the block's duration."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.run_forever)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()

    async def _lane_loop(self, lane: _Lane) -> None:
        while True:
            while not lane.queue:
                lane.arrived = trio.Event()
                await lane.arrived.wait()
            linger = self._max_wait if lane.last_batch > 1 else 0.0
            oldest = lane.queue[0].enqueued
            with trio.move_on_at(oldest + linger):
                while sum(not j.cancelled for j in lane.queue) < self._max_batch:
                    lane.arrived = trio.Event()
                    await lane.arrived.wait()
            batch: list[_Job] = []
            while lane.queue and len(batch) < self._max_batch:
                job = lane.queue.popleft()
                if not job.cancelled:
                    batch.append(job)
            if batch:
                lane.last_batch = len(batch)
                await self._run_batch(lane.model, batch)

    async def _run_batch(self, model: LoadedModel, batch: list[_Job]) -> None:
        items = [(job.inputs, job.params) for job in batch]
        async with self._device:
            for job in batch:
                if job.on_start is not None:
                    job.on_start()
            try:
                outputs, compute_ms = await trio.to_thread.run_sync(_timed_run, model, items)
                if len(outputs) != len(batch):
                    raise RuntimeError(f"{len(outputs)} outputs for {len(batch)} tasks")
            except Exception as exc:  # a model's own bug must fail its tasks, not the node
                self._fail(model, batch, exc)
                return
        runtime = model.runtime_claim(len(batch))
        for job, out in zip(batch, outputs, strict=True):
            job.result = Execution(out.outputs, runtime, out.commitment, len(batch), compute_ms)
            job.done.set()

    @staticmethod
    def _fail(model: LoadedModel, batch: list[_Job], exc: Exception) -> None:
        log.error("%s failed on a batch of %d: %r", model.name, len(batch), exc, exc_info=exc)
        for job in batch:
            job.error = InternalError(
                f"{model.name} failed running this task: {type(exc).__name__}"
            )
            job.done.set()


def _timed_run(
    model: LoadedModel, items: list[tuple[Values, dict[str, int]]]
) -> tuple[list[ModelOutput], float]:
    apply_thread_count()
    start = time.perf_counter()
    outputs = model.run_batch(items)
    return outputs, (time.perf_counter() - start) * 1000.0
