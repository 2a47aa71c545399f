"""Refusal logs, rate-limited per reason, with a count of what was suppressed."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from mesh.aio.ratelog import RateLimitedLog, flush_all

pytestmark = pytest.mark.unit


async def test_a_flood_of_one_reason_writes_a_burst_then_a_count(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.ratelog")
    log = RateLimitedLog(logging.getLogger("test.ratelog"), burst=3, per_s=1.0, report_s=10.0)
    for i in range(1000):
        log.info("bad-signature", "task %d refused", i)
    log.info("expired", "another reason is not held back")
    assert [r.getMessage() for r in caplog.records] == [
        "task 0 refused",
        "task 1 refused",
        "task 2 refused",
        "another reason is not held back",
    ]
    assert log.suppressed("bad-signature") == 997
    await trio.sleep(10)
    flush_all()
    assert caplog.records[-1].getMessage() == (
        "997 more bad-signature line(s) suppressed in the last 10 s"
    )
    assert log.suppressed("bad-signature") == 0
    # The bucket refilled meanwhile: lines flow again.
    assert log.info("bad-signature", "task %d refused", 1000)
    assert log.written == 6


def test_outside_trio_it_uses_the_monotonic_clock(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.ratelog2")
    log = RateLimitedLog(logging.getLogger("test.ratelog2"), burst=1)
    assert log.warning("x", "one")
    assert not log.warning("x", "two")
    log.flush(force=True)
    assert caplog.records[-1].getMessage().startswith("1 more x line(s) suppressed")
