"""Admission control: a bounded number of tasks in flight, a cap per client.

Sans-IO: time is passed in (trio seconds). When full, the node answers
``busy`` with a ``retry_after_ms`` estimated from the measured throughput: the
time for the excess work ahead of the caller to drain, clamped to a sane range.
"""

from __future__ import annotations

import math
from collections import Counter, deque

from mesh.errors import Busy

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

    def start(self, now: float) -> None:
        """Note when measuring began (rates before a full window use the elapsed time)."""
        if self._started is None:
            self._started = now

    def record(self, now: float) -> None:
        """One task finished at ``now``."""
        self.start(now)
        self._done.append(now)

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
    """Counts tasks in flight and refuses past the caps with :class:`Busy`."""

    def __init__(self, *, capacity: int, per_client: int, meter: ThroughputMeter) -> None:
        if capacity < 1 or per_client < 1:
            raise ValueError("capacity and per_client must be at least 1")
        self.capacity = capacity
        self.per_client = per_client
        self._meter = meter
        self._by_client: Counter[bytes] = Counter()
        self._in_flight = 0
        self.closed = False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def admit(self, client: bytes, *, now: float) -> None:
        """Take a slot for ``client`` or raise Busy (with retry-after)."""
        self.check(client, now=now)
        self._in_flight += 1
        self._by_client[client] += 1

    def check(self, client: bytes, *, now: float) -> None:
        """Raise Busy if :meth:`admit` would, without taking a slot."""
        if self.closed:
            raise Busy("node is draining", retry_after_ms=MAX_RETRY_AFTER_MS)
        if self._in_flight >= self.capacity:
            excess = self._in_flight - self.capacity + 1
            raise Busy(
                f"queue full ({self._in_flight}/{self.capacity})",
                retry_after_ms=self.retry_after_ms(excess, now=now),
            )
        if self._by_client[client] >= self.per_client:
            raise Busy(
                f"too many tasks in flight for this client (cap {self.per_client})",
                retry_after_ms=self.retry_after_ms(1, now=now),
            )

    def release(self, client: bytes, *, now: float) -> None:
        """Give back a slot taken by :meth:`admit` once the task is finished."""
        self._in_flight -= 1
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]
        self._meter.record(now)

    def retry_after_ms(self, excess: int, *, now: float) -> int:
        """Time for ``excess`` tasks to drain at the measured rate, clamped."""
        rate = self._meter.rate(now)
        if rate is None:
            return DEFAULT_RETRY_AFTER_MS
        wait = math.ceil(1000 * excess / rate)
        return max(MIN_RETRY_AFTER_MS, min(MAX_RETRY_AFTER_MS, wait))
