"""Admission caps, retry-after from measured throughput, the task lifecycle table."""

from __future__ import annotations

import pytest

from mesh.errors import Busy, InternalError
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


def test_queue_cap_then_busy_with_default_retry_before_any_measurement() -> None:
    adm = Admission(capacity=2, per_client=5, meter=ThroughputMeter())
    adm.admit(A, now=0.0)
    adm.admit(B, now=0.0)
    with pytest.raises(Busy) as info:
        adm.admit(A, now=0.0)
    assert info.value.retry_after_ms == DEFAULT_RETRY_AFTER_MS
    adm.release(A, now=1.0)
    adm.admit(A, now=1.0)
    assert adm.in_flight == 2


def test_per_client_cap_leaves_room_for_others() -> None:
    adm = Admission(capacity=10, per_client=1, meter=ThroughputMeter())
    adm.admit(A, now=0.0)
    with pytest.raises(Busy, match="client"):
        adm.admit(A, now=0.0)
    adm.admit(B, now=0.0)


def test_retry_after_follows_measured_throughput() -> None:
    meter = ThroughputMeter(window_s=10.0)
    meter.start(0.0)
    adm = Admission(capacity=1, per_client=1, meter=meter)
    for i in range(20):  # 20 tasks in 10 s: 2 tasks/s
        adm.admit(A, now=i * 0.5)
        adm.release(A, now=i * 0.5 + 0.5)
    assert meter.rate(10.0) == pytest.approx(2.0)
    adm.admit(A, now=10.0)
    with pytest.raises(Busy) as info:
        adm.admit(B, now=10.0)
    assert info.value.retry_after_ms == 500  # one task ahead at 2/s


def test_retry_after_is_clamped() -> None:
    meter = ThroughputMeter(window_s=100.0)
    meter.start(0.0)
    meter.record(100.0)  # 0.01 tasks/s
    adm = Admission(capacity=1, per_client=1, meter=meter)
    assert adm.retry_after_ms(1, now=100.0) == MAX_RETRY_AFTER_MS
    for _ in range(4000):
        meter.record(100.0)
    assert adm.retry_after_ms(1, now=100.0) == MIN_RETRY_AFTER_MS


def test_closed_admission_refuses_everyone() -> None:
    adm = Admission(capacity=4, per_client=4, meter=ThroughputMeter())
    adm.closed = True
    with pytest.raises(Busy, match="draining"):
        adm.admit(A, now=0.0)


def test_lifecycle_happy_path_and_receipt_guard() -> None:
    table = TaskTable()
    table.receive(b"t")
    for state in (TaskState.ADMITTED, TaskState.QUEUED, TaskState.RUNNING):
        with pytest.raises(InternalError):
            table.require_done(b"t")
        table.move(b"t", state)
    table.move(b"t", TaskState.DONE)
    table.require_done(b"t")
    table.close(b"t")
    assert table.count() == 0


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((), TaskState.RUNNING),
        ((TaskState.ADMITTED,), TaskState.DONE),
        ((TaskState.ADMITTED, TaskState.QUEUED), TaskState.ADMITTED),
    ],
)
def test_lifecycle_rejects_illegal_transitions(path: tuple[TaskState, ...], bad: TaskState) -> None:
    table = TaskTable()
    table.receive(b"t")
    for state in path:
        table.move(b"t", state)
    with pytest.raises(InternalError):
        table.move(b"t", bad)


def test_failed_tasks_leave_the_table_and_duplicates_are_refused() -> None:
    table = TaskTable()
    table.receive(b"t")
    with pytest.raises(InternalError):
        table.receive(b"t")
    table.fail(b"t")
    assert table.state(b"t") is None
    table.fail(b"unknown")  # ignored


def test_check_does_not_take_a_slot() -> None:
    adm = Admission(capacity=1, per_client=1, meter=ThroughputMeter())
    adm.check(A, now=0.0)
    adm.check(A, now=0.0)
    assert adm.in_flight == 0
    adm.admit(A, now=0.0)
    with pytest.raises(Busy):
        adm.check(B, now=0.0)
