"""Log lines about refused input, rate-limited per reason.

A node must say why it refused a message (one line each, no traceback: bad input
is not a bug), but a stranger can send thousands of bad messages a second and
must not be able to fill the operator's disk or drown the lines that matter.
Each reason (``bad-signature``, ``stream-stalled``...) has a token bucket:
``burst`` lines at once, then ``per_s`` lines a second. Lines past that are
counted, and once ``report_s`` has passed since a reason's last summary, one
line says how many of that reason were suppressed. Summaries are written when a
later line of any reason is logged, and by :meth:`RateLimitedLog.flush` (a node
calls :func:`flush_all` every few seconds), so the count is never lost when the
flood stops.

Time is trio's clock when a trio run is active, ``time.monotonic`` otherwise.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass

import trio

# Per reason: this many lines at once, then this many per second.
DEFAULT_BURST = 10
DEFAULT_PER_S = 1.0
# A reason's "N more suppressed" line comes at most this often.
DEFAULT_REPORT_S = 10.0

_all: weakref.WeakSet[RateLimitedLog] = weakref.WeakSet()


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside trio.run
        return time.monotonic()


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0
    reported: float = 0.0


class RateLimitedLog:
    """Writes at most ``burst`` + ``per_s`` x t lines of each reason to ``logger``.

    Args:
        logger: where lines go.
        burst: lines of one reason allowed at once.
        per_s: lines of one reason per second after the burst.
        report_s: shortest interval between two summaries of one reason.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = DEFAULT_BURST,
        per_s: float = DEFAULT_PER_S,
        report_s: float = DEFAULT_REPORT_S,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._per_s = per_s
        self._report_s = report_s
        self._buckets: dict[str, _Bucket] = {}
        self.written = 0  # lines written, summaries included (tests read it)
        _all.add(self)

    def log(self, level: int, reason: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Log ``msg % args`` at ``level`` unless ``reason`` is over its rate; True if written.

        ``exc_info`` adds the current traceback: for bugs only, never for bad input.
        """
        now = _now()
        self.flush(now=now)
        bucket = self._buckets.get(reason)
        if bucket is None:
            bucket = self._buckets[reason] = _Bucket(float(self._burst), now, reported=now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._per_s)
        bucket.updated = now
        if bucket.tokens < 1:
            bucket.suppressed += 1
            return False
        bucket.tokens -= 1
        self._write(level, msg, *args, exc_info=exc_info)
        return True

    def info(self, reason: str, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, reason, msg, *args)

    def warning(self, reason: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, reason, msg, *args)

    def suppressed(self, reason: str) -> int:
        """Lines of ``reason`` suppressed and not yet reported."""
        bucket = self._buckets.get(reason)
        return 0 if bucket is None else bucket.suppressed

    def flush(self, *, now: float | None = None, force: bool = False) -> None:
        """Write the summary of every reason whose ``report_s`` has passed (all with ``force``)."""
        now = _now() if now is None else now
        for reason, bucket in self._buckets.items():
            if bucket.suppressed and (force or now - bucket.reported >= self._report_s):
                self._write(
                    logging.INFO,
                    "%d more %s line(s) suppressed in the last %.0f s",
                    bucket.suppressed,
                    reason,
                    now - bucket.reported,
                )
                bucket.suppressed = 0
                bucket.reported = now
            elif not bucket.suppressed:
                bucket.reported = now

    def _write(self, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        self.written += 1
        self._logger.log(level, msg, *args, exc_info=exc_info)


def flush_all(*, force: bool = False) -> None:
    """Write due summaries of every live :class:`RateLimitedLog` (a node calls this)."""
    now = _now()
    for log in list(_all):
        log.flush(now=now, force=force)
