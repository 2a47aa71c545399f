"""The node's streams share one partial budget: each may send less often as more run."""

from __future__ import annotations

import contextlib

import pytest

from mesh.node.streaming import PARTIAL_INTERVAL_S, PARTIALS_PER_S, StreamPace

pytestmark = pytest.mark.unit


def test_a_few_streams_send_at_the_floor_many_share_the_budget() -> None:
    pace = StreamPace()
    assert pace.interval() == PARTIAL_INTERVAL_S
    with pace.streaming(), pace.streaming():
        assert pace.active == 2 and pace.interval() == PARTIAL_INTERVAL_S
    assert pace.active == 0
    streams = 4 * int(PARTIALS_PER_S * PARTIAL_INTERVAL_S)  # well past the floor
    with contextlib.ExitStack() as running:
        for _ in range(streams):
            running.enter_context(pace.streaming())
        # All streams together send at most the budget.
        assert streams / pace.interval() == pytest.approx(PARTIALS_PER_S)
    assert pace.active == 0


def test_a_stream_that_fails_still_leaves_the_count() -> None:
    pace = StreamPace(per_s=10.0, floor_s=0.5)
    with pytest.raises(RuntimeError), pace.streaming():
        raise RuntimeError("the requester went away")
    assert pace.active == 0 and pace.interval() == 0.5
