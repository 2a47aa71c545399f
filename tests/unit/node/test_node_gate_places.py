"""The gate's places are the task table's RUNNING tasks: no second count of tasks in flight."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mesh.errors import InternalError
from mesh.node.gate import RunGate, no_start_limit
from mesh.node.lifecycle import TaskState, TaskTable

pytestmark = pytest.mark.unit

MODEL = b"m" * 32
PATH = ("prefix", "peer", "key")


def _queued(table: TaskTable, task_id: bytes) -> None:
    table.admit(task_id, b"k" * 32, model=MODEL)
    table.move(task_id, TaskState.QUEUED)


async def test_a_place_is_taken_by_the_turn_and_freed_when_the_block_ends() -> None:
    table = TaskTable()
    gate = RunGate(slots=1, start=no_start_limit(), table=table)
    first_in, release = trio.Event(), trio.Event()
    order: list[bytes] = []

    async def task(task_id: bytes, *, fail: bool = False) -> None:
        _queued(table, task_id)
        try:
            async with gate.turn(MODEL, PATH, task_id):
                order.append(task_id)
                assert table.state(task_id) is TaskState.RUNNING
                first_in.set()
                await release.wait()
                if fail:
                    raise InternalError("the batch failed")
                table.move(task_id, TaskState.DONE)
        except InternalError:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: task(b"a", fail=True))
        await first_in.wait()
        nursery.start_soon(task, b"b")
        await trio.testing.wait_all_tasks_blocked()
        # One place: b waits, and the table says so.
        assert table.count_model(MODEL, TaskState.RUNNING) == 1
        assert table.state(b"b") is TaskState.QUEUED
        release.set()
    # a's block failed: the gate failed it in the table and gave b the place.
    assert order == [b"a", b"b"]
    assert b"a" not in table and table.state(b"b") is TaskState.DONE
    assert table.count_model(MODEL, TaskState.RUNNING) == 0
