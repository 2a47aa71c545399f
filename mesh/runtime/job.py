"""A task inside the executor: its job record, its lane's queue, and its result.

A job is *waiting* from :meth:`Lane.submit` until it is finished, failed or
cancelled (its caller gone); the batching loops skip jobs that are not waiting,
so a cancelled job is dropped from the queue or from a running batch at the next
step, and its token hook is never called again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from mesh.core.values import Values
from mesh.runtime.registry import LoadedModel

log = logging.getLogger(__name__)

TokenHook = Callable[[list[int]], None]
"""Receives a task's new token ids after each step that produced some (trio thread)."""


@dataclass(frozen=True)
class Execution:
    """The result of one task.

    Attributes:
        outputs: the model's outputs.
        runtime: the runtime claim (device, dtype, torch, flags, batch_size).
        commitment: activation commitment (``b""`` for models without one).
        batch_size: how many tasks shared the forward pass; under continuous
            batching, the most that shared any step of this task.
        compute_ms: wall time of the forward pass(es) this task took part in, in
            milliseconds (under continuous batching, the sum of its steps).
    """

    outputs: Values
    runtime: dict[str, str | int | bool]
    commitment: bytes
    batch_size: int
    compute_ms: float


@dataclass(eq=False)
class Job:
    """One submitted task and how it ended."""

    inputs: Values
    params: dict[str, int]
    enqueued: float
    on_start: Callable[[], None] | None = None
    on_tokens: TokenHook | None = None
    done: trio.Event = field(default_factory=trio.Event)
    result: Execution | None = None
    error: Exception | None = None
    cancelled: bool = False

    @property
    def waiting(self) -> bool:
        """Neither finished, failed nor cancelled: worth running."""
        return not self.cancelled and not self.done.is_set()

    def finish(self, result: Execution) -> None:
        """Resolve with a result (no effect once done)."""
        if not self.done.is_set():
            self.result = result
            self.done.set()

    def fail(self, error: Exception) -> None:
        """Resolve with an error (no effect once done)."""
        if not self.done.is_set():
            self.error = error
            self.done.set()

    def start(self) -> None:
        """Tell the caller its task starts running; call on the trio thread.

        A hook that raises fails this job with its own exception.
        """
        if self.on_start is None or not self.waiting:
            return
        try:
            self.on_start()
        except Exception as exc:  # the caller's hook; its failure ends its own task only
            log.warning("a start hook raised %r; its task stops", exc)
            self.fail(exc)

    def emit(self, ids: list[int]) -> None:
        """Hand new token ids to the hook; call on the trio thread.

        A hook that raises fails this job with its own exception (its caller
        gets it back from ``Executor.run``); the lane and other jobs go on.
        """
        if self.on_tokens is None or not ids or not self.waiting:
            return
        try:
            self.on_tokens(ids)
        except Exception as exc:  # the caller's hook; its failure ends its own task only
            log.warning("a token hook raised %r; its task stops", exc)
            self.fail(exc)


class Lane:
    """One model's queue of jobs."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.queue: deque[Job] = deque()
        self.arrived = trio.Event()
        self.last_batch = 0  # size of the previous batch: >1 means concurrent load

    def submit(self, job: Job) -> None:
        self.queue.append(job)
        self.arrived.set()

    async def wait_for_work(self) -> None:
        """Return once the queue holds a job (perhaps a cancelled one)."""
        while not self.queue:
            self.arrived = trio.Event()
            await self.arrived.wait()

    def take(self, count: int) -> list[Job]:
        """Pop up to ``count`` waiting jobs, oldest first, discarding cancelled ones."""
        jobs: list[Job] = []
        while self.queue and len(jobs) < count:
            job = self.queue.popleft()
            if job.waiting:
                jobs.append(job)
        return jobs
