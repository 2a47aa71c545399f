"""Peer scoring and choice: load, measured latency and recent health.

Sans-IO: times are passed in (trio seconds). A peer's score is an estimate of
the milliseconds a task would take there, lower is better:

    score = rtt_ms x (1 + LOAD_WEIGHT x load) + FAILURE_PENALTY_MS x recent_failures

- ``rtt_ms``: EWMA of this client's measured request latencies to the peer; an
  unmeasured peer gets ``UNKNOWN_RTT_MS``, optimistic enough to be tried.
- ``load``: ``(queue_depth + our own tasks in flight there) / queue_capacity``
  from its signed capacity record (or gossip); counting our in-flight tasks is
  what spreads a ``map`` over several peers before any record is refreshed.
- ``recent_failures``: failures decayed with a half-life, so a peer that failed
  a minute ago is tried again; a receipt that did not verify weighs much more.

Choice picks at random among peers within ``NEAR_EQUAL`` of the best score, so
clients with identical views do not stampede the same peer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

UNKNOWN_RTT_MS = 50.0
EWMA_ALPHA = 0.3  # weight of the newest latency sample
LOAD_WEIGHT = 4.0  # a full queue makes a peer look 5x slower
FAILURE_PENALTY_MS = 2_000.0
VERIFICATION_FAILURE_WEIGHT = 50.0  # a lying peer is worth 50 ordinary failures
FAILURE_HALF_LIFE_S = 60.0
NEAR_EQUAL = 0.2  # scores within 20 % (plus 2 ms) of the best count as equal
NEAR_EQUAL_MS = 2.0


@dataclass
class PeerStats:
    """What this client has measured about one peer."""

    rtt_ms: float | None = None
    failure_weight: float = 0.0
    failure_time: float = 0.0
    successes: int = 0
    in_flight: int = 0

    def decayed_failures(self, now: float) -> float:
        if self.failure_weight == 0.0:
            return 0.0
        age = max(0.0, now - self.failure_time)
        return self.failure_weight * math.pow(0.5, age / FAILURE_HALF_LIFE_S)


@dataclass(frozen=True, slots=True)
class Load:
    """A peer's advertised load (from its capacity record)."""

    queue_depth: int
    queue_capacity: int

    @property
    def fraction(self) -> float:
        return self.queue_depth / self.queue_capacity if self.queue_capacity > 0 else 1.0


class PeerBook:
    """Per-peer statistics of one client."""

    def __init__(self) -> None:
        self._stats: dict[str, PeerStats] = {}

    def stats(self, peer_id: str) -> PeerStats:
        return self._stats.setdefault(peer_id, PeerStats())

    def started(self, peer_id: str) -> None:
        self.stats(peer_id).in_flight += 1

    def finished(self, peer_id: str) -> None:
        stats = self.stats(peer_id)
        stats.in_flight = max(0, stats.in_flight - 1)

    def success(self, peer_id: str, latency_ms: float) -> None:
        stats = self.stats(peer_id)
        stats.successes += 1
        if stats.rtt_ms is None:
            stats.rtt_ms = latency_ms
        else:
            stats.rtt_ms = (1 - EWMA_ALPHA) * stats.rtt_ms + EWMA_ALPHA * latency_ms

    def failure(self, peer_id: str, *, now: float, weight: float = 1.0) -> None:
        stats = self.stats(peer_id)
        stats.failure_weight = stats.decayed_failures(now) + weight
        stats.failure_time = now

    def score(self, peer_id: str, load: Load | None, *, now: float) -> float:
        """Estimated milliseconds for a task on ``peer_id``; lower is better."""
        stats = self.stats(peer_id)
        rtt = stats.rtt_ms if stats.rtt_ms is not None else UNKNOWN_RTT_MS
        if load is None:
            fraction = 0.5  # unknown load: assume half full
            extra = 0.0
        else:
            fraction = load.fraction
            extra = stats.in_flight / load.queue_capacity if load.queue_capacity > 0 else 1.0
        if load is None and stats.in_flight:
            extra = stats.in_flight / 8  # no capacity known: assume a small queue
        return rtt * (1 + LOAD_WEIGHT * (fraction + extra)) + FAILURE_PENALTY_MS * (
            stats.decayed_failures(now)
        )

    def choose(
        self,
        candidates: Sequence[tuple[str, Load | None]],
        *,
        now: float,
        exclude: Collection[str] = (),
        rng: random.Random | None = None,
    ) -> str | None:
        """Pick a peer among ``candidates`` not in ``exclude``; None when none is left."""
        scored = [
            (self.score(pid, load, now=now), pid) for pid, load in candidates if pid not in exclude
        ]
        if not scored:
            return None
        best = min(score for score, _ in scored)
        limit = best * (1 + NEAR_EQUAL) + NEAR_EQUAL_MS
        near = sorted(pid for score, pid in scored if score <= limit)
        return (rng or random).choice(near)
