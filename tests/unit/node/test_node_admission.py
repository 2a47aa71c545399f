"""Admission caps over the task table, retry-after from measured throughput, the lifecycle."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mesh.errors import Busy, ConfigError, InternalError
from mesh.node.admission import (
    DEFAULT_RETRY_AFTER_MS,
    MAX_RETRY_AFTER_MS,
    MIN_RETRY_AFTER_MS,
    Admission,
    ThroughputMeter,
)
from mesh.node.lifecycle import TaskState, TaskTable

pytestmark = pytest.mark.unit

A, B = b"a" * 32, b"b" * 32


def _admission(
    capacity: int, per_client: int, meter: ThroughputMeter | None = None
) -> tuple[Admission, TaskTable]:
    table = TaskTable()
    meter = meter or ThroughputMeter()
    return Admission(capacity=capacity, per_client=per_client, table=table, meter=meter), table


def test_queue_cap_then_busy_with_default_retry_before_any_measurement() -> None:
    adm, table = _admission(2, 5)
    table.admit(b"1", A)
    table.admit(b"2", B)
    with pytest.raises(Busy) as info:
        adm.check(A, now=0.0)
    assert info.value.retry_after_ms == DEFAULT_RETRY_AFTER_MS
    table.fail(b"1")
    adm.check(A, now=1.0)
    assert adm.in_flight == 1


def test_per_client_cap_leaves_room_for_others() -> None:
    adm, table = _admission(10, 1)
    table.admit(b"1", A)
    with pytest.raises(Busy, match="client"):
        adm.check(A, now=0.0)
    adm.check(B, now=0.0)


def test_check_does_not_take_a_slot() -> None:
    adm, table = _admission(1, 1)
    adm.check(A, now=0.0)
    adm.check(A, now=0.0)
    assert adm.in_flight == 0
    table.admit(b"1", A)
    with pytest.raises(Busy):
        adm.check(B, now=0.0)


def test_retry_after_follows_measured_throughput() -> None:
    meter = ThroughputMeter(window_s=10.0)
    meter.start(0.0)
    adm, table = _admission(1, 1, meter)
    for i in range(20):  # 20 tasks in 10 s: 2 tasks/s
        meter.record(i * 0.5 + 0.5)
    assert meter.rate(10.0) == pytest.approx(2.0)
    table.admit(b"1", A)
    with pytest.raises(Busy) as info:
        adm.check(B, now=10.0)
    assert info.value.retry_after_ms == 500  # one task ahead at 2/s


def test_retry_after_is_clamped() -> None:
    meter = ThroughputMeter(window_s=100.0)
    meter.start(0.0)
    meter.record(100.0)  # 0.01 tasks/s
    adm, _ = _admission(1, 1, meter)
    assert adm.retry_after_ms(1, now=100.0) == MAX_RETRY_AFTER_MS
    for _ in range(4000):
        meter.record(100.0)
    assert adm.retry_after_ms(1, now=100.0) == MIN_RETRY_AFTER_MS


def test_closed_admission_refuses_everyone() -> None:
    adm, _ = _admission(4, 4)
    adm.closed = True
    with pytest.raises(Busy, match="draining"):
        adm.check(A, now=0.0)


@pytest.mark.parametrize(("capacity", "per_client"), [(0, 1), (1, 0)])
def test_caps_below_one_are_a_config_error(capacity: int, per_client: int) -> None:
    with pytest.raises(ConfigError):
        _admission(capacity, per_client)


def test_lifecycle_happy_path_and_receipt_guard() -> None:
    table = TaskTable()
    table.admit(b"t", A)
    for state in (TaskState.QUEUED, TaskState.RUNNING):
        with pytest.raises(InternalError):
            table.require_done(b"t")
        table.move(b"t", state)
    table.move(b"t", TaskState.DONE)
    table.require_done(b"t")
    assert table.count(TaskState.DONE) == 1 and table.count_for(A) == 1
    table.close(b"t")
    assert table.count() == 0 and table.count_for(A) == 0


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((), TaskState.RUNNING),
        ((), TaskState.DONE),
        ((TaskState.QUEUED,), TaskState.ADMITTED),
        ((TaskState.QUEUED, TaskState.RUNNING, TaskState.DONE), TaskState.FAILED),
    ],
)
def test_lifecycle_rejects_illegal_transitions(path: tuple[TaskState, ...], bad: TaskState) -> None:
    table = TaskTable()
    table.admit(b"t", A)
    for state in path:
        table.move(b"t", state)
    with pytest.raises(InternalError):
        table.move(b"t", bad)


def test_failed_tasks_leave_the_table_and_duplicates_are_refused() -> None:
    table = TaskTable()
    table.admit(b"t", A)
    with pytest.raises(InternalError):
        table.admit(b"t", B)
    table.move(b"t", TaskState.FAILED)
    assert table.state(b"t") is None and table.count_for(A) == 0
    table.fail(b"unknown")  # ignored


def test_counts_per_state_and_client() -> None:
    table = TaskTable()
    table.admit(b"1", A)
    table.admit(b"2", A)
    table.admit(b"3", B)
    table.move(b"1", TaskState.QUEUED)
    table.move(b"1", TaskState.RUNNING)
    assert table.count() == 3
    assert table.count(TaskState.RUNNING) == 1
    assert table.count(TaskState.ADMITTED, TaskState.RUNNING) == 3
    assert (table.count_for(A), table.count_for(B)) == (2, 1)


async def test_wait_idle_returns_when_the_last_task_leaves() -> None:
    table = TaskTable()
    await table.wait_idle()  # nothing in flight: at once
    table.admit(b"1", A)
    table.admit(b"2", B)
    idle = trio.Event()

    async def waiter() -> None:
        await table.wait_idle()
        idle.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        table.fail(b"1")
        await trio.testing.wait_all_tasks_blocked()
        assert not idle.is_set()
        table.move(b"2", TaskState.QUEUED)
        table.move(b"2", TaskState.RUNNING)
        table.move(b"2", TaskState.DONE)
        table.close(b"2")
    assert idle.is_set()
