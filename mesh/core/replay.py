"""Task admission checks that need memory: a bounded replay cache.

A node accepts a task once. :class:`ReplayCache` remembers each accepted task's
``(client key, nonce)`` until the task expires; after that the task is refused
as expired anyway (:func:`~mesh.core.signing.verify_task`), so forgetting it is
safe. Because the validity window is capped, live entries are bounded by the
task rate times the window; when the cache is full of live entries it answers
Busy instead of forgetting one (forgetting would let a replay through).

Sans-IO: the time is a parameter, nothing here reads a clock.
"""

from __future__ import annotations

import heapq

from mesh.core import limits
from mesh.core.envelope import Signed
from mesh.core.messages import Task
from mesh.core.signing import verify_task
from mesh.errors import Busy, ConfigError, MalformedMessage, Replayed

# 100k live tasks x ~100 bytes per entry: ~10 MB at most.
DEFAULT_REPLAY_ENTRIES = 100_000


class ReplayCache:
    """Remembers accepted tasks until they expire.

    Args:
        max_entries: the most live tasks remembered at once.
    """

    def __init__(self, max_entries: int = DEFAULT_REPLAY_ENTRIES) -> None:
        if max_entries < 1:
            raise ConfigError("max_entries must be positive")
        self._max_entries = max_entries
        self._expiry: dict[tuple[bytes, bytes], int] = {}
        # (expires_ms, key) in expiry order, to evict in O(log n).
        self._heap: list[tuple[int, tuple[bytes, bytes]]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, signed: object) -> bool:
        if not isinstance(signed, Signed) or not isinstance(signed.message, Task):
            return False
        return (signed.message.client, signed.message.nonce) in self._expiry

    def check_and_add(self, signed: Signed[Task], now_ms: int) -> None:
        """Record ``signed`` as accepted at ``now_ms``.

        Raises:
            Replayed: a task with this client and nonce was accepted and has not expired.
            Busy: the cache is full of live entries; ``retry_after_ms`` says when the
                first one expires.
        """
        self.evict(now_ms)
        task = signed.message
        key = (task.client, task.nonce)
        if key in self._expiry:
            raise Replayed("task nonce already seen")
        if len(self._expiry) >= self._max_entries:
            retry = max(1, self._heap[0][0] - now_ms + 1)
            raise Busy("replay cache full", retry_after_ms=retry)
        self._expiry[key] = task.expires_ms
        heapq.heappush(self._heap, (task.expires_ms, key))

    def evict(self, now_ms: int) -> None:
        """Forget every task that expired before ``now_ms``."""
        while self._heap and self._heap[0][0] < now_ms:
            _, key = heapq.heappop(self._heap)
            self._expiry.pop(key, None)


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
