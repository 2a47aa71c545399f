"""Admission control: a bounded number of tasks in flight, shared fairly between sources.

Sans-IO: time is passed in (trio seconds); the counts are read from the node's
task table, the one record of tasks in flight. A client key has a cap of its
own. When the node is full, a newcomer from a source holding fewer places takes
the place of a waiting task from a source holding more
(:mod:`mesh.node.fairshare`); otherwise the node answers ``busy`` with a
``retry_after_ms`` estimated from the measured throughput: the time for the
excess work ahead of the caller to drain, clamped to a sane range.
"""

from __future__ import annotations

import math
from collections import deque

from mesh.errors import Busy, ConfigError
from mesh.node.fairshare import room_for
from mesh.node.lifecycle import TaskTable
from mesh.node.sources import Source

# Without a measurement yet (fresh node), suggest a short wait.
DEFAULT_RETRY_AFTER_MS = 500
MIN_RETRY_AFTER_MS = 50
MAX_RETRY_AFTER_MS = 30_000
# Throughput is the completion rate over this trailing window.
THROUGHPUT_WINDOW_S = 30.0
_MAX_SAMPLES = 4096  # bounds memory at very high task rates


class ThroughputMeter:
    """Tasks completed per second over a trailing window."""

    def __init__(self, *, window_s: float = THROUGHPUT_WINDOW_S) -> None:
        self._window_s = window_s
        self._done: deque[float] = deque(maxlen=_MAX_SAMPLES)
        self._started: float | None = None
        self.completed = 0  # tasks finished since the start

    def start(self, now: float) -> None:
        """Note when measuring began (rates before a full window use the elapsed time)."""
        if self._started is None:
            self._started = now

    def record(self, now: float) -> None:
        """One task finished at ``now``."""
        self.start(now)
        self._done.append(now)
        self.completed += 1

    def rate(self, now: float) -> float | None:
        """Tasks per second, or None before any task finished in the window."""
        while self._done and self._done[0] < now - self._window_s:
            self._done.popleft()
        if not self._done or self._started is None:
            return None
        span = min(self._window_s, now - self._started)
        if span <= 0:
            return None
        return len(self._done) / span


class Admission:
    """Refuses tasks past the caps with :class:`Busy`; the counts are the task table's.

    Args:
        capacity: tasks in flight (admitted, not answered) before answering busy.
        per_client: tasks in flight per client key.
        table: the node's task table (:mod:`mesh.node.lifecycle`), read, never written.
        meter: completions per second, for the retry-after estimate.

    Raises:
        ConfigError: a cap below 1.
    """

    def __init__(
        self, *, capacity: int, per_client: int, table: TaskTable, meter: ThroughputMeter
    ) -> None:
        if capacity < 1 or per_client < 1:
            raise ConfigError("capacity and per_client must be at least 1")
        self.capacity = capacity
        self.per_client = per_client
        self._table = table
        self._meter = meter
        self.closed = False

    @property
    def in_flight(self) -> int:
        """Tasks admitted and not yet answered."""
        return self._table.count()

    def check(self, client: bytes, *, now: float, source: Source | None = None) -> bytes | None:
        """Raise Busy unless a task of ``client`` (from ``source``) may be admitted now.

        Returns:
            None, or the id of a waiting task that must give its place to this one
            (the caller displaces it before admitting).
        """
        if self.closed:
            raise Busy("node is draining", retry_after_ms=MAX_RETRY_AFTER_MS)
        if self._table.count_for(client) >= self.per_client:
            raise Busy(
                f"too many tasks in flight for this client (cap {self.per_client})",
                retry_after_ms=self.retry_after_ms(1, now=now),
            )
        in_flight = self.in_flight
        if in_flight < self.capacity:
            return None
        victim = room_for(source or Source("", "", client), self._table.held())
        if victim is not None:
            return victim
        excess = in_flight - self.capacity + 1
        raise Busy(
            f"queue full ({in_flight}/{self.capacity})",
            retry_after_ms=self.retry_after_ms(excess, now=now),
        )

    def retry_after_ms(self, excess: int, *, now: float) -> int:
        """Time for ``excess`` tasks to drain at the measured rate, clamped."""
        rate = self._meter.rate(now)
        if rate is None:
            return DEFAULT_RETRY_AFTER_MS
        wait = math.ceil(1000 * excess / rate)
        return max(MIN_RETRY_AFTER_MS, min(MAX_RETRY_AFTER_MS, wait))
