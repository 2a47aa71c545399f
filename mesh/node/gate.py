"""The gate in front of the runner: admitted tasks wait here and go in fair order.

The runtime's executor takes tasks of a model in the order they come. In front
of it each model has a queue (:class:`~mesh.node.fairqueue.FairQueue`) and a
number of places (``slots``: enough for a full batch); a task waits here until
its model has a free place and its source's turn came, then holds the place
while the runner runs it. So a source sending many tasks (of one key or of
fresh keys and PeerIDs) gets its share of each model's places, never more while
others wait, and a model's queue never holds another model's tasks back.

Tasks also start no faster than a token bucket allows (``start``): that is what
bounds the replay cache (:mod:`mesh.core.replay`), which records a task when
it starts.

A waiting task may leave early: its requester went away or it expired (the
handler is cancelled, and the gate forgets it), or admission took its place for
a fairer claim (:meth:`RunGate.displace`: it gets the error given).

The places in use are the task table's RUNNING tasks of the model: the gate
moves a task QUEUED -> RUNNING when its turn comes, and a task leaves RUNNING
when its block ends (DONE, set by the handler inside the block, or failed here),
so the table stays the one record of tasks in flight.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from mesh.core.tokenbucket import TokenBucket
from mesh.errors import ConfigError, MeshError
from mesh.node.fairqueue import FairQueue
from mesh.node.lifecycle import TaskState, TaskTable

# Levels of a waiting task's path: address prefix, transport peer, client key.
PATH_DEPTH = 3


@dataclass(eq=False, slots=True)
class _Waiter:
    task_id: bytes
    model: bytes
    turn: trio.Event = field(default_factory=trio.Event)
    error: MeshError | None = None


@dataclass(slots=True)
class _Model:
    queue: FairQueue[_Waiter]


class RunGate:
    """Fair turns at the runner, per model.

    Args:
        slots: tasks of one model handed to the runner at once (a full batch).
        start: tasks may start no faster than this bucket allows.
        table: the node's task table (its QUEUED tasks wait here; RUNNING ones hold places).
    """

    def __init__(self, *, slots: int, start: TokenBucket, table: TaskTable) -> None:
        if slots < 1:
            raise ConfigError("the runner needs at least one slot per model")
        self._slots = slots
        self._start = start
        self._table = table
        self._models: dict[bytes, _Model] = {}
        self._waiters: dict[bytes, _Waiter] = {}
        self._wake = trio.Event()  # set when the bucket may let a waiting task go
        self.started = 0

    @property
    def waiting(self) -> int:
        """Tasks waiting for their turn, all models."""
        return len(self._waiters)

    @asynccontextmanager
    async def turn(
        self, model: bytes, path: Sequence[Hashable], task_id: bytes, *, cost: float = 1.0
    ) -> AsyncIterator[None]:
        """Wait for this task's turn, hold a place of ``model`` for the block, give it back.

        The task must be QUEUED in the table; it is RUNNING inside the block, and the
        block must end with it DONE (else it is failed here on the way out).

        Raises:
            MeshError: the error given to :meth:`displace` (admission took the place).
        """
        lane = self._models.get(model)
        if lane is None:
            lane = self._models[model] = _Model(FairQueue(PATH_DEPTH))
        waiter = _Waiter(task_id, model)
        lane.queue.push(path, waiter, cost)
        self._waiters[task_id] = waiter
        try:
            self._dispatch(model)
            await waiter.turn.wait()
        except BaseException:
            # Cancelled (requester gone, expiry) or displaced meanwhile.
            if self._waiters.get(task_id) is waiter:
                del self._waiters[task_id]
                lane.queue.remove(waiter)
            if waiter.turn.is_set() and waiter.error is None:
                self._release(model, task_id)  # its turn came in the same instant: pass it on
            raise
        if waiter.error is not None:
            raise waiter.error
        try:
            yield
        finally:
            self._release(model, task_id)

    def displace(self, task_id: bytes, error: MeshError) -> bool:
        """Take a waiting task out of its queue; its :meth:`turn` raises ``error``."""
        waiter = self._waiters.pop(task_id, None)
        if waiter is None:
            return False
        self._models[waiter.model].queue.remove(waiter)
        waiter.error = error
        waiter.turn.set()
        return True

    async def run(self) -> None:
        """Let waiting tasks go when the start bucket refills (in the node's nursery)."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while True:
                self._dispatch_all()
                if not self._waiting_for_tokens():
                    break
                await trio.sleep_until(self._start.next_at(trio.current_time()))

    def _release(self, model: bytes, task_id: bytes) -> None:
        if self._table.state(task_id) is TaskState.RUNNING:
            self._table.fail(task_id)  # the block ended without an answer
        self._dispatch(model)

    def _dispatch_all(self) -> None:
        for model in list(self._models):
            self._dispatch(model)

    def _dispatch(self, model: bytes) -> None:
        lane = self._models[model]
        while self._free(model) and len(lane.queue):
            if not self._start.take(trio.current_time()):
                self._wake.set()  # run() waits for the next token
                return
            waiter = lane.queue.pop()
            assert waiter is not None
            del self._waiters[waiter.task_id]
            self._table.move(waiter.task_id, TaskState.RUNNING)
            self.started += 1
            waiter.turn.set()

    def _free(self, model: bytes) -> bool:
        return self._table.count_model(model, TaskState.RUNNING) < self._slots

    def _waiting_for_tokens(self) -> bool:
        return any(self._free(m) and len(lane.queue) for m, lane in self._models.items())


def no_start_limit() -> TokenBucket:
    """A bucket that never runs dry (tests of other parts)."""
    return TokenBucket(rate=math.inf, burst=math.inf)
