"""The executor: per-model batching on trio, torch in a worker thread.

Each served model has a lane: a queue of tasks and a loop that runs them in
batches with ``trio.to_thread.run_sync``. One forward pass runs at a time in the
process: the device is one resource, and torch's thread count stays what the
runtime claim says. Turns on it go to the waiting lane that has used the least
device time (:mod:`mesh.runtime.device_share`), so a heavy model's lane cannot
hold a light one's tasks back for more than one of its turns.

Two kinds of loop:

- *Continuous batching* (generation lanes, the default): a decode loop where
  new tasks join the running batch at the next step (their prompt prefilled in
  that step alongside the others' one-token decode) and finished tasks leave at
  once, at most ``max_batch`` at a time; each step is its own worker-thread call
  under the limiter, so other lanes' batches interleave between steps. See
  :mod:`mesh.runtime.continuous`.
- *Dynamic (static) batching* (classify and embed lanes; generation lanes too
  with ``continuous=False``): the loop takes up to ``max_batch`` queued tasks
  and runs them to the end as one batch; tasks arriving meanwhile wait for the
  next batch. Waiting for company is adaptive: when the lane's previous batch
  held more than one task (there is concurrent load), the oldest task may wait
  up to ``max_wait_ms`` for more; when it held one (a lone client), the task
  runs at once instead of paying the wait for nothing.

On CPU a generation task's tokens and commitment are the same in either mode,
alone or in any company, whenever it joins (batch-invariant kernels, one seeded
sampler per task).

A model that raises fails the tasks of that batch (or step) with
``InternalError``; the lane goes on serving. Admission is the node's: it reads
:meth:`Executor.queue_depth`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import trio

from mesh.core.model_root import format_root
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import ConfigError, InternalError, InvalidInput, UnknownModel
from mesh.runtime.continuous import ContinuousLane
from mesh.runtime.convert import to_torch
from mesh.runtime.device import apply_thread_count
from mesh.runtime.device_share import SharedDevice
from mesh.runtime.job import Execution, Job, Lane, TokenHook
from mesh.runtime.output import ModelOutput
from mesh.runtime.registry import LoadedModel

__all__ = ["Execution", "Executor", "TokenHook"]

log = logging.getLogger(__name__)


class Executor:
    """Runs tasks on loaded models, batching concurrent tasks of one model."""

    def __init__(
        self,
        models: Sequence[LoadedModel],
        *,
        max_batch: int = 16,
        max_wait_ms: int = 5,
        max_queue: int = 64,
        continuous: bool = True,
    ) -> None:
        """Args:
        models: the models served, keyed by their model_root.
        max_batch: most tasks in one forward pass (under continuous batching,
            most sequences decoding at once).
        max_wait_ms: longest the oldest queued task waits for company
            (dynamic batching only: a generation lane in continuous mode never
            waits, since later tasks join at the next step).
        max_queue: the queue capacity the node admits against.
        continuous: continuous batching for generation lanes; False runs them
            with static batching (each batch to the end), as classify and embed
            lanes always run, e.g. to compare the two in one benchmark.
        """
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ConfigError("max_batch and max_queue must be >= 1, max_wait_ms >= 0")
        self._lanes = {m.model_root: Lane(m) for m in models}
        self._continuous = continuous
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._capacity = max_queue
        self._depth = 0
        # One forward pass at a time, turns fair between lanes by device time used.
        self._device = SharedDevice()
        self._turns = {root: self._device.lane(root) for root in self._lanes}

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
        on_tokens: TokenHook | None = None,
    ) -> Execution:
        """Run one task, batched with concurrent callers of the same model.

        Args:
            model_root: the model.
            inputs: the task's inputs.
            params: the task's integer params.
            on_start: called on the trio thread when the task starts running: when
                its batch starts, or under continuous batching when it joins the
                running batch (the step that prefills its prompt). If it raises,
                the task stops and this call raises that exception.
            on_tokens: for generation models, called on the trio thread (never
                from a worker thread) with this task's new token ids after each
                step that produced some: one id per step under continuous
                batching, all of them at once when the batch ends under static
                batching. It must not block; if it raises, the task stops and
                this call raises that exception. It is never called after this
                call returns or raises.

        Raises:
            UnknownModel: the root is not served here.
            InvalidInput: inputs or params do not fit the model, or ``on_tokens``
                for a model that emits no tokens.
            InternalError: the model failed on this task's batch.
        """
        lane = self._lanes.get(model_root)
        if lane is None:
            raise UnknownModel(f"this node does not serve model {format_root(model_root)}")
        lane.model.validate(inputs, params)
        if on_tokens is not None and lane.model.manifest.kind != "generate":
            raise InvalidInput(f"{lane.model.name} emits no tokens to stream")
        job = Job(inputs, params, trio.current_time(), on_start, on_tokens)
        lane.submit(job)
        self._depth += 1
        try:
            await job.done.wait()
        except trio.Cancelled:
            job.cancelled = True  # queued: skipped; running: dropped at the next step
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
                if self._continuous and lane.model.manifest.kind == "generate":
                    decode = ContinuousLane(
                        lane, device=self._turns[lane.model.model_root], max_batch=self._max_batch
                    )
                    nursery.start_soon(decode.run)
                else:
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

    async def _lane_loop(self, lane: Lane) -> None:
        while True:
            await lane.wait_for_work()
            linger = self._max_wait if lane.last_batch > 1 else 0.0
            oldest = lane.queue[0].enqueued
            with trio.move_on_at(oldest + linger):
                while sum(not j.cancelled for j in lane.queue) < self._max_batch:
                    lane.arrived = trio.Event()
                    await lane.arrived.wait()
            batch = lane.take(self._max_batch)
            if batch:
                lane.last_batch = len(batch)
                await self._run_batch(lane.model, batch)

    async def _run_batch(self, model: LoadedModel, batch: list[Job]) -> None:
        items = [(job.inputs, job.params) for job in batch]
        async with self._turns[model.model_root]:
            for job in batch:
                job.start()
            try:
                outputs, compute_ms = await trio.to_thread.run_sync(_timed_run, model, items)
                if len(outputs) != len(batch):
                    raise RuntimeError(f"{len(outputs)} outputs for {len(batch)} tasks")
            except Exception as exc:  # a model's own bug must fail its tasks, not the node
                self._fail(model, batch, exc)
                return
        runtime = model.runtime_claim(len(batch))
        for job, out in zip(batch, outputs, strict=True):
            if job.on_tokens is not None:  # static batching: all tokens when the batch ends
                job.emit(_token_ids(out))
            job.finish(Execution(out.outputs, runtime, out.commitment, len(batch), compute_ms))

    @staticmethod
    def _fail(model: LoadedModel, batch: list[Job], exc: Exception) -> None:
        log.error("%s failed on a batch of %d: %r", model.name, len(batch), exc, exc_info=exc)
        for job in batch:
            job.fail(InternalError(f"{model.name} failed running this task: {type(exc).__name__}"))


def _timed_run(
    model: LoadedModel, items: list[tuple[Values, dict[str, int]]]
) -> tuple[list[ModelOutput], float]:
    apply_thread_count()
    start = time.perf_counter()
    outputs = model.run_batch(items)
    return outputs, (time.perf_counter() - start) * 1000.0


def _token_ids(out: ModelOutput) -> list[int]:
    """A generation's ``token_ids`` output as ints ([] for other outputs)."""
    ids = out.outputs.get("token_ids")
    if not isinstance(ids, Tensor):
        return []
    return [int(i) for i in to_torch(ids).tolist()]
