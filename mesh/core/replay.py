"""Task admission checks that need memory: a bounded replay cache.

A node runs a task once. :class:`ReplayCache` remembers each task it started
running, as ``(client key, nonce)``, until the task expires; after that the task
is refused as expired anyway (:func:`~mesh.core.signing.verify_task`), so
forgetting it is safe. Only tasks that start running are recorded: a task
refused for any reason (bad input, busy, displaced, dropped while queued) keeps
its nonce and takes no entry, so garbage cannot fill the cache.

The memory bound, stated as arithmetic. A task is valid for at most
``MAX_TASK_WINDOW_MS`` plus ``MAX_CLOCK_SKEW_MS`` (its creation may lie that far
in our future), so an entry lives at most ``REPLAY_WINDOW_S`` = 630 s, plus
under 1 s until its expiry second is swept. A node lets tasks start through a
token bucket of ``rate`` per second and ``burst`` at once (:func:`start_rate`),
so at any moment::

    entries <= burst + rate x (REPLAY_WINDOW_S + 1)

and :func:`start_rate` picks ``rate`` and ``burst`` from the cache size so that
this is at most ``max_entries``: the cache can never fill within the window,
whatever the admission rate (for 500,000 entries: 790 tasks started per second
at most; under 100 bytes an entry, so under 50 MB when full, measured in
``tests/unit/core/test_core_replay.py``). Should it fill anyway (a smaller
cache than the rate assumes), it answers Busy rather than forget a live entry
(forgetting would let a replay through).

Entries are compact: an 8-byte BLAKE2b digest of ``(client, nonce)`` in a set,
and in an array per expiry second for sweeping. A digest shared by two honest
tasks would refuse the second as replayed: ~N / 2^64 per task with N entries
(under 1e-13 at 500,000), and an attacker can neither choose another client's
nonce nor profit from colliding with its own.

Sans-IO: the time is a parameter, nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from dataclasses import dataclass

from mesh.core import limits
from mesh.core.envelope import Signed
from mesh.core.messages import Task
from mesh.core.signing import verify_task
from mesh.errors import Busy, ConfigError, MalformedMessage, Replayed

# The longest an entry must be remembered: the longest validity window plus the
# clock skew a task's creation time may have (seconds).
REPLAY_WINDOW_S = (limits.MAX_TASK_WINDOW_MS + limits.MAX_CLOCK_SKEW_MS) / 1000
# Under 100 bytes an entry (see the module docstring): 500k entries < 50 MB when
# full, and 790 tasks may start per second, just above what one node serves a task
# per item (759/s on tiny-mlp, benchmarks/RESULTS.md; a batched task is one start).
# A node that must start more raises NodeConfig.replay_entries (memory for rate).
DEFAULT_REPLAY_ENTRIES = 500_000
# Tasks that may start at once, as a share of the per-second rate: one second's worth.
BURST_SECONDS = 1.0
_KEY_BYTES = 8


@dataclass(frozen=True, slots=True)
class StartRate:
    """How fast tasks may start so that a replay cache of ``entries`` never fills."""

    rate: float  # tasks per second
    burst: float  # tasks at once


def start_rate(max_entries: int) -> StartRate:
    """The start rate and burst for which ``burst + rate x (window + 1 s) <= max_entries``."""
    rate = max_entries / (REPLAY_WINDOW_S + 1 + BURST_SECONDS)
    return StartRate(rate=rate, burst=max(1.0, rate * BURST_SECONDS))


class ReplayCache:
    """Remembers started tasks until they expire.

    Args:
        max_entries: the most live tasks remembered at once.
    """

    def __init__(self, max_entries: int = DEFAULT_REPLAY_ENTRIES) -> None:
        if max_entries < 1:
            raise ConfigError("max_entries must be positive")
        self.max_entries = max_entries
        self._live: set[int] = set()
        # Expiry second -> the keys expiring in it; and those seconds in a min-heap.
        self._by_second: dict[int, array[int]] = {}
        self._seconds: list[int] = []

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, signed: object) -> bool:
        if not isinstance(signed, Signed) or not isinstance(signed.message, Task):
            return False
        return _key(signed.message) in self._live

    def check(self, signed: Signed[Task], now_ms: int) -> None:
        """Raise Replayed if ``signed``'s nonce was recorded and has not expired (no change)."""
        self.evict(now_ms)
        if _key(signed.message) in self._live:
            raise Replayed("task nonce already seen")

    def check_and_add(self, signed: Signed[Task], now_ms: int) -> None:
        """Record ``signed`` as started at ``now_ms``.

        Raises:
            Replayed: a task with this client and nonce was recorded and has not expired.
            Busy: the cache is full of live entries; ``retry_after_ms`` says when the
                first ones are swept.
        """
        self.evict(now_ms)
        task = signed.message
        key = _key(task)
        if key in self._live:
            raise Replayed("task nonce already seen")
        if len(self._live) >= self.max_entries:
            retry = max(1, (self._seconds[0] + 1) * 1000 - now_ms)
            raise Busy("replay cache full", retry_after_ms=retry)
        self._live.add(key)
        second = task.expires_ms // 1000
        keys = self._by_second.get(second)
        if keys is None:
            keys = self._by_second[second] = array("Q")
            heapq.heappush(self._seconds, second)
        keys.append(key)

    def evict(self, now_ms: int) -> None:
        """Forget every task whose expiry second ended before ``now_ms``."""
        current = now_ms // 1000
        while self._seconds and self._seconds[0] < current:
            second = heapq.heappop(self._seconds)
            self._live.difference_update(self._by_second.pop(second))


def _key(task: Task) -> int:
    digest = hashlib.blake2b(task.client + task.nonce, digest_size=_KEY_BYTES).digest()
    return int.from_bytes(digest, "big")


def admit_task(
    signed: Signed[Task],
    *,
    now_ms: int,
    cache: ReplayCache,
    worker_key: bytes | None = None,
    max_window_ms: int = limits.MAX_TASK_WINDOW_MS,
    skew_ms: int = limits.MAX_CLOCK_SKEW_MS,
) -> None:
    """All checks a node runs on an opened task before queueing it.

    Order: target worker, validity window and skew, then replay (last, so a task
    refused for another reason does not occupy the cache).

    Raises:
        MalformedMessage: the task targets another worker than ``worker_key``.
        Expired: see :func:`~mesh.core.signing.verify_task`.
        Replayed, Busy: see :meth:`ReplayCache.check_and_add`.
    """
    target = signed.message.target
    if worker_key is not None and target and target != worker_key:
        raise MalformedMessage("task is addressed to another worker")
    verify_task(signed, now_ms=now_ms, max_window_ms=max_window_ms, skew_ms=skew_ms)
    cache.check_and_add(signed, now_ms)
