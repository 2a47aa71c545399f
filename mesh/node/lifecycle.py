"""A task's life on a node, as a table (STYLE.md #2).

Rules:
- a task enters as RECEIVED once its envelope decoded;
- RECEIVED -> ADMITTED after every check passed (signature, window, target,
  input hash, model, replay, admission) or -> FAILED;
- ADMITTED -> QUEUED when handed to the runner; QUEUED -> RUNNING when the
  runner starts it; RUNNING -> DONE with outputs, or -> FAILED;
- ADMITTED/QUEUED may also fail (drain, runner refusal);
- DONE and FAILED are final; a receipt is issued only from DONE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mesh.errors import InternalError


class TaskState(enum.Enum):
    RECEIVED = "received"
    ADMITTED = "admitted"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.RECEIVED: frozenset({TaskState.ADMITTED, TaskState.FAILED}),
    TaskState.ADMITTED: frozenset({TaskState.QUEUED, TaskState.FAILED}),
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.FAILED}),
    TaskState.RUNNING: frozenset({TaskState.DONE, TaskState.FAILED}),
    TaskState.DONE: frozenset(),
    TaskState.FAILED: frozenset(),
}

FINAL = frozenset({TaskState.DONE, TaskState.FAILED})


@dataclass
class TaskTable:
    """States of the tasks a node is handling, keyed by task id.

    FAILED tasks are dropped at once; DONE tasks stay until :meth:`close` (after
    their receipt is issued), so the table's size is bounded by the admitted
    tasks plus those being checked.
    """

    _states: dict[bytes, TaskState] = field(default_factory=dict)

    def receive(self, task_id: bytes) -> None:
        """Start tracking ``task_id``; a duplicate id in flight is a replay."""
        if task_id in self._states:
            raise InternalError("task already in flight")
        self._states[task_id] = TaskState.RECEIVED

    def move(self, task_id: bytes, new: TaskState) -> None:
        """Apply one transition; raises InternalError for one the table forbids."""
        old = self._states.get(task_id)
        if old is None or new not in TRANSITIONS[old]:
            raise InternalError(f"illegal task transition {old} -> {new}")
        if new is TaskState.FAILED:
            del self._states[task_id]
        else:
            self._states[task_id] = new

    def close(self, task_id: bytes) -> None:
        """Forget a DONE task once its answer is built."""
        if self._states.get(task_id) is TaskState.DONE:
            del self._states[task_id]

    def fail(self, task_id: bytes) -> None:
        """Mark a tracked task failed (from any non-final state) and forget it.

        Unknown ids are ignored; a DONE task whose answer could not be built
        (no receipt) is simply forgotten.
        """
        state = self._states.get(task_id)
        if state is TaskState.DONE:
            del self._states[task_id]
        elif state is not None:
            self.move(task_id, TaskState.FAILED)

    def state(self, task_id: bytes) -> TaskState | None:
        return self._states.get(task_id)

    def count(self, *states: TaskState) -> int:
        """How many tracked tasks are in any of ``states`` (all when none given)."""
        if not states:
            return len(self._states)
        return sum(1 for s in self._states.values() if s in states)

    def require_done(self, task_id: bytes) -> None:
        """Raise unless ``task_id`` is DONE: guards receipt issuance."""
        if self._states.get(task_id) is not TaskState.DONE:
            raise InternalError("a receipt can only be issued for a task that ran")
