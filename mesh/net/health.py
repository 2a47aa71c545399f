"""Our own peer-health list: which peers failed recently and are to be avoided.

Sans-IO: the caller passes the current time (seconds, any monotonic clock), so
backoff is tested without sleeping. py-libp2p 0.8.1 never evicts frozen or
closed peers from its routing tables (notes, bug 6), so the adapter consults
this list before trusting anything the library returns.

Rules:
- a failure marks the peer dead until ``now + backoff``; the backoff doubles
  with each consecutive failure, from ``base_backoff`` up to ``max_backoff``;
- a success forgets the peer's failures at once;
- a peer whose backoff has run out is live again (worth one more try); one more
  failure then sends it back with a longer backoff.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import ConfigError

# 2 s: about one request deadline, so a peer that froze briefly is retried soon.
DEFAULT_BASE_BACKOFF_S = 2.0
# 5 min: a peer gone for good is retried rarely, but still retried (it may come back).
DEFAULT_MAX_BACKOFF_S = 300.0
# Enough to remember every peer of a large testnet; the oldest entries go first.
DEFAULT_MAX_ENTRIES = 4096


@dataclass(slots=True)
class _Entry:
    failures: int
    dead_until: float


class HealthList:
    """Consecutive failures per peer, with an exponential backoff."""

    def __init__(
        self,
        *,
        base_backoff: float = DEFAULT_BASE_BACKOFF_S,
        max_backoff: float = DEFAULT_MAX_BACKOFF_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if base_backoff <= 0 or max_backoff < base_backoff:
            raise ConfigError("need 0 < base_backoff <= max_backoff")
        self._base = base_backoff
        self._max = max_backoff
        self._max_entries = max_entries
        self._entries: dict[str, _Entry] = {}

    def record_failure(self, peer_id: str, *, now: float) -> float:
        """Count one failure of ``peer_id``; return the time it is avoided until."""
        entry = self._entries.pop(peer_id, None)
        failures = 1 if entry is None else entry.failures + 1
        backoff = min(self._max, self._base * float(1 << min(failures - 1, 62)))
        # Re-inserted last so the dict stays ordered from stalest to freshest.
        self._entries[peer_id] = _Entry(failures=failures, dead_until=now + backoff)
        while len(self._entries) > self._max_entries:
            del self._entries[next(iter(self._entries))]
        return now + backoff

    def record_success(self, peer_id: str) -> None:
        """Forget the failures of ``peer_id``: it answered."""
        self._entries.pop(peer_id, None)

    def is_dead(self, peer_id: str, *, now: float) -> bool:
        """True while ``peer_id`` is inside its backoff window."""
        entry = self._entries.get(peer_id)
        return entry is not None and now < entry.dead_until

    def failures(self, peer_id: str) -> int:
        """Consecutive failures counted for ``peer_id`` (0 when healthy)."""
        entry = self._entries.get(peer_id)
        return 0 if entry is None else entry.failures

    def dead_peers(self, *, now: float) -> list[str]:
        """Peers inside their backoff window at ``now``."""
        return [p for p, e in self._entries.items() if now < e.dead_until]
