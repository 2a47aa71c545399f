"""Pacing refusals: a source that keeps sending what the node refuses gets its answers late.

Every request costs the node a decode, a signature check and an answer, even
one it refuses (busy, invalid input, expired...). A stranger can send refused
requests as fast as the node answers them (measured: ~900 busy answers a
second to one attacker, ~500 invalid-input answers a second), and the CPU they
take is the honest clients' latency. Holding a refusal back costs the node
nothing (a sleeping task) and slows the sender, since each of its streams waits
for its answer and a peer holds a bounded number of streams.

A refusal is held back for ``PACE_S`` when its source

- already holds a large share of the node (its key or its transport peer a
  client's cap, its address prefix half the places): a busy answer to it says
  "you have enough", and it should wait anyway;
- or was refused more than ``REFUSALS_PER_S`` times a second, sustained (a token
  bucket of ``REFUSAL_BURST``), as a transport peer or as an address prefix
  (``PREFIX_FACTOR`` times more for a prefix: several honest clients may share one).

An honest client is refused rarely, holds little, and gets its answer at once
(and goes elsewhere). Sans-IO: time is a parameter.
"""

from __future__ import annotations

from collections import OrderedDict

from mesh.core.tokenbucket import TokenBucket
from mesh.node.sources import Source

# How long a paced refusal is held back: pacing a flood needs a second, and a
# task deadline is far longer.
PACE_S = 1.0
# Refusals a transport peer may draw per second (sustained) and at once.
REFUSALS_PER_S = 20.0
REFUSAL_BURST = 40.0
# An address prefix may draw this many times more than one peer.
PREFIX_FACTOR = 4.0
# Buckets kept (least recently used go first): bounds memory under fresh PeerIDs.
MAX_TRACKED = 4096


class RefusalPacer:
    """Says how long to hold back a refusal to a source (0: answer at once)."""

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def delay(
        self,
        source: Source,
        *,
        holding: tuple[int, int, int],
        share: int,
        capacity: int,
        now: float,
    ) -> float:
        """Seconds to hold back a refusal to ``source``.

        Args:
            source: the refused task's source.
            holding: places its prefix, peer and key hold now (``TaskTable.holding``).
            share: a client's cap (``per_client``).
            capacity: the node's places.
            now: trio seconds.
        """
        prefix, peer, key = holding
        over_share = max(peer, key) >= share or 2 * prefix >= capacity
        # Both buckets are charged, so a flood is measured whatever decides.
        peer_ok = self._take(f"peer {source.peer}", now, 1.0)
        prefix_ok = self._take(f"prefix {source.prefix}", now, PREFIX_FACTOR)
        return PACE_S if over_share or not (peer_ok and prefix_ok) else 0.0

    def _take(self, key: str, now: float, factor: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(rate=REFUSALS_PER_S * factor, burst=REFUSAL_BURST * factor)
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)
