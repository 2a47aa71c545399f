"""A token bucket: at most ``burst`` events at once and ``rate`` per second after.

Sans-IO: time (seconds, any monotonic origin) is a parameter. A node uses one
to cap how fast tasks start running, which is what bounds its replay cache
(see :mod:`mesh.core.replay`).
"""

from __future__ import annotations

from mesh.errors import ConfigError


class TokenBucket:
    """``take`` succeeds at most ``burst + rate * t`` times in any span of ``t`` seconds.

    Args:
        rate: tokens added per second.
        burst: the most tokens held at once (the bucket starts full).
    """

    def __init__(self, *, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ConfigError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._updated: float | None = None

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        if self._updated is None or now > self._updated:
            self._updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def next_at(self, now: float) -> float:
        """When the next token is there (``now`` if one is)."""
        self._refill(now)
        if self._tokens >= 1:
            return now
        return now + (1 - self._tokens) / self.rate
