"""A task's life on a node, as a table (STYLE.md #2): the one record of tasks in flight.

Rules:
- a task enters as ADMITTED once every check passed (signature, window, target,
  input hash, model, inputs, admission): the checks before that are one step of
  the handler, with nothing to record;
- ADMITTED -> QUEUED when it waits for its turn at the runner (the fair gate,
  :mod:`mesh.node.gate`); QUEUED -> RUNNING when its turn came and it was handed
  to the runner (the replay cache records it then); RUNNING -> DONE with outputs;
- any state before DONE may go to FAILED (drain, expiry, its requester gone,
  displaced by a fairer claim, runner refusal, a failed batch); a task leaves
  the table when it fails or, once DONE, when its receipt was issued
  (:meth:`TaskTable.close`);
- a receipt is issued only from DONE (:meth:`TaskTable.require_done`).

Each task is kept with its :class:`~mesh.node.sources.Source` (address prefix,
transport peer, client key). Admission reads its counts here (per state, per
client key, and the entries it may displace: :meth:`TaskTable.held`), the
drain waits on :meth:`TaskTable.wait_idle`, and a node's status reports
:meth:`TaskTable.count`: nothing else keeps its own count of tasks in flight.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

import trio

from mesh.errors import InternalError
from mesh.node.fairshare import Held
from mesh.node.sources import Source


class TaskState(enum.Enum):
    ADMITTED = "admitted"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.ADMITTED: frozenset({TaskState.QUEUED, TaskState.FAILED}),
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.FAILED}),
    TaskState.RUNNING: frozenset({TaskState.DONE, TaskState.FAILED}),
    TaskState.DONE: frozenset(),
    TaskState.FAILED: frozenset(),
}

FINAL = frozenset({TaskState.DONE, TaskState.FAILED})


@dataclass(slots=True)
class _Entry:
    client: bytes
    state: TaskState
    source: Source
    order: int
    model: bytes


class TaskTable:
    """The tasks a node has admitted and not yet answered, keyed by task id."""

    def __init__(self) -> None:
        self._entries: dict[bytes, _Entry] = {}
        self._by_client: Counter[bytes] = Counter()
        self._admitted = 0  # tasks ever admitted: the order of admission
        self._idle = trio.Event()
        self._idle.set()

    def admit(
        self,
        task_id: bytes,
        client: bytes,
        *,
        source: Source | None = None,
        model: bytes = b"",
    ) -> None:
        """Start tracking an admitted task; a duplicate id in flight is a bug upstream.

        Args:
            task_id: the task's id.
            client: the client key that signed it.
            source: where it came from (default: the client key alone).
            model: the model_root it runs on (the gate counts places per model).
        """
        if task_id in self._entries:
            raise InternalError("task already in flight")
        self._admitted += 1
        self._entries[task_id] = _Entry(
            client, TaskState.ADMITTED, source or Source("", "", client), self._admitted, model
        )
        self._by_client[client] += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def move(self, task_id: bytes, new: TaskState) -> None:
        """Apply one transition; raises InternalError for one the table forbids."""
        entry = self._entries.get(task_id)
        old = None if entry is None else entry.state
        if entry is None or new not in TRANSITIONS[entry.state]:
            raise InternalError(f"illegal task transition {old} -> {new}")
        if new is TaskState.FAILED:
            self._forget(task_id)
        else:
            entry.state = new

    def close(self, task_id: bytes) -> None:
        """Forget a DONE task once its answer is built."""
        entry = self._entries.get(task_id)
        if entry is not None and entry.state is TaskState.DONE:
            self._forget(task_id)

    def fail(self, task_id: bytes) -> None:
        """Forget a tracked task that ends without an answer, whatever its state.

        Unknown ids are ignored (the task was closed already); a DONE task whose
        answer could not be built (no receipt) is forgotten too.
        """
        if task_id in self._entries:
            self._forget(task_id)

    def state(self, task_id: bytes) -> TaskState | None:
        entry = self._entries.get(task_id)
        return None if entry is None else entry.state

    def count(self, *states: TaskState) -> int:
        """How many tracked tasks are in any of ``states`` (all when none given)."""
        if not states:
            return len(self._entries)
        return sum(1 for e in self._entries.values() if e.state in states)

    def count_for(self, client: bytes) -> int:
        """Tasks in flight for one client key."""
        return self._by_client.get(client, 0)

    def count_model(self, model: bytes, state: TaskState) -> int:
        """Tasks of one model in ``state`` (the gate's places in use: RUNNING)."""
        return sum(1 for e in self._entries.values() if e.model == model and e.state is state)

    def holding(self, source: Source) -> tuple[int, int, int]:
        """Tasks in flight from ``source``'s address prefix, its transport peer, its key."""
        prefix = peer = key = 0
        for entry in self._entries.values():
            if entry.source.prefix == source.prefix:
                prefix += 1
                if entry.source.peer == source.peer:
                    peer += 1
                    key += entry.source.key == source.key
        return prefix, peer, key

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries

    def held(self) -> list[Held]:
        """Every task in flight as :class:`~mesh.node.fairshare.Held` (waiting: QUEUED)."""
        return [
            Held(task_id, e.source, e.order, e.state is TaskState.QUEUED)
            for task_id, e in self._entries.items()
        ]

    def require_done(self, task_id: bytes) -> None:
        """Raise unless ``task_id`` is DONE: guards receipt issuance."""
        if self.state(task_id) is not TaskState.DONE:
            raise InternalError("a receipt can only be issued for a task that ran")

    async def wait_idle(self) -> None:
        """Return once no task is in flight (at once if none is)."""
        while self._entries:
            await self._idle.wait()

    def _forget(self, task_id: bytes) -> None:
        entry = self._entries.pop(task_id)
        self._by_client[entry.client] -= 1
        if self._by_client[entry.client] <= 0:
            del self._by_client[entry.client]
        if not self._entries:
            self._idle.set()
