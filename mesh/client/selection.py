"""Peer scoring and choice: load, measured latency and the network's health list.

Sans-IO apart from the health view it is given. A peer's score is an estimate
of the milliseconds a task would take there, lower is better::

    score = rtt_ms x (1 + LOAD_WEIGHT x load) + FAILURE_PENALTY_MS x failures
            (+ DEAD_PENALTY_MS while the peer is in its health backoff)

- ``rtt_ms``: EWMA of this client's measured request latencies to the peer; an
  unmeasured peer gets ``UNKNOWN_RTT_MS``, optimistic enough to be tried.
- ``load``: ``(queue_depth + our own tasks in flight there) / queue_capacity``
  from its signed capacity record (or gossip); counting our in-flight tasks is
  what spreads a ``map`` over several peers before any record is refreshed.
- ``failures``: consecutive failures from the network's one health list
  (:class:`mesh.net.health.HealthList`), which the transport feeds on every dial,
  stream or deadline failure and the client feeds on failed answers. A peer in
  its backoff is chosen only when nothing else is left.

Whether a peer's *answers* can be trusted is not health: peers caught lying are
left out by the client's reputation before they reach this module.

Choice picks at random among peers within ``NEAR_EQUAL`` of the best score, so
clients with identical views do not stampede the same peer.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

UNKNOWN_RTT_MS = 50.0
EWMA_ALPHA = 0.3  # weight of the newest latency sample
LOAD_WEIGHT = 4.0  # a full queue makes a peer look 5x slower
FAILURE_PENALTY_MS = 2_000.0
# A peer inside its backoff still ranks, behind every peer outside one.
DEAD_PENALTY_MS = 1_000_000.0
NEAR_EQUAL = 0.2  # scores within 20 % (plus 2 ms) of the best count as equal
NEAR_EQUAL_MS = 2.0


class HealthView(Protocol):
    """What selection reads of the network's health list."""

    def is_healthy(self, peer_id: str) -> bool: ...

    def consecutive_failures(self, peer_id: str) -> int: ...


@dataclass
class PeerStats:
    """What this client has measured about one peer."""

    rtt_ms: float | None = None
    successes: int = 0
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class Load:
    """A peer's advertised load (from its capacity record)."""

    queue_depth: int
    queue_capacity: int

    @property
    def fraction(self) -> float:
        return self.queue_depth / self.queue_capacity if self.queue_capacity > 0 else 1.0


class PeerBook:
    """Per-peer latency and in-flight counts of one client, scored with the health view."""

    def __init__(self, health: HealthView) -> None:
        self._health = health
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

    def score(self, peer_id: str, load: Load | None) -> float:
        """Estimated milliseconds for a task on ``peer_id``; lower is better."""
        stats = self.stats(peer_id)
        rtt = stats.rtt_ms if stats.rtt_ms is not None else UNKNOWN_RTT_MS
        if load is None:
            fraction = 0.5  # unknown load: assume half full
            extra = stats.in_flight / 8  # no capacity known: assume a small queue
        else:
            fraction = load.fraction
            extra = stats.in_flight / load.queue_capacity if load.queue_capacity > 0 else 1.0
        penalty = FAILURE_PENALTY_MS * self._health.consecutive_failures(peer_id)
        if not self._health.is_healthy(peer_id):
            penalty += DEAD_PENALTY_MS
        return rtt * (1 + LOAD_WEIGHT * (fraction + extra)) + penalty

    def choose(
        self,
        candidates: Sequence[tuple[str, Load | None]],
        *,
        exclude: Collection[str] = (),
        rng: random.Random | None = None,
    ) -> str | None:
        """Pick a peer among ``candidates`` not in ``exclude``; None when none is left."""
        scored = [(self.score(pid, load), pid) for pid, load in candidates if pid not in exclude]
        if not scored:
            return None
        best = min(score for score, _ in scored)
        limit = best * (1 + NEAR_EQUAL) + NEAR_EQUAL_MS
        near = sorted(pid for score, pid in scored if score <= limit)
        return (rng or random).choice(near)
