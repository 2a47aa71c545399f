"""Wall-clock milliseconds read through trio's clock.

Services read time only through ``trio.current_time()``; epoch milliseconds
(the ``*_ms`` fields of tasks, receipts and capacity records) are that plus a
fixed offset. Production computes the offset once from ``time.time()``; tests
running on ``MockClock`` pass a fixed offset, so virtual time drives expiry too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

WallClock = Callable[[], int]
"""Returns the current wall-clock time in epoch milliseconds."""


def trio_wall_clock(*, offset_s: float | None = None) -> WallClock:
    """A :data:`WallClock` that follows trio's clock.

    Args:
        offset_s: seconds to add to ``trio.current_time()``; ``None`` measures
            ``time.time() - trio.current_time()`` on the first call (which must
            then happen inside ``trio.run``).
    """
    offset: list[float] = [] if offset_s is None else [offset_s]

    def now_ms() -> int:
        if not offset:
            offset.append(time.time() - trio.current_time())
        return int((trio.current_time() + offset[0]) * 1000)

    return now_ms
