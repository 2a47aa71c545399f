"""A peer's book of live signed capacity records: what it knows of the mesh.

Capacity records are self-authenticating (signed by the peer they describe, with
their own expiry), so a peer may learn them from anyone -- the DHT, load gossip,
another peer answering a record exchange -- and hand them on. The book is where
they meet: every record enters through :meth:`RecordBook.accept`, which runs the
same checks whatever the source (:func:`mesh.core.signing.verify_capacity`), and
keeps the newest record per peer until it expires.

Sans-IO: the caller passes the current wall-clock time in epoch milliseconds.

Rules:
- a record that does not open or verify raises (the caller counts it against its
  source); nothing of it is kept;
- per peer the record with the latest ``created_ms`` wins; an older one is valid
  but not kept;
- an expired record is dropped when read, never returned;
- the book holds at most ``max_records``; past that, expired records go first,
  then the records that expire soonest (a mesh too big to hold whole is sampled,
  and the DHT remains the source for the rest).
"""

from __future__ import annotations

import heapq

from mesh.core.envelope import Signed, open_signed
from mesh.core.identity import peer_id_from_public_key, public_key_from_peer_id
from mesh.core.messages import CapacityRecord
from mesh.core.signing import verify_capacity

# 4,096 records of ~450 bytes (plus their decoded form) is a few MB: a whole
# testnet or a mid-sized mesh, while a peer of a 10,000-node mesh keeps a sample.
DEFAULT_MAX_RECORDS = 4096


class RecordBook:
    """The newest live capacity record per peer, each checked on the way in.

    Args:
        max_records: how many peers' records are held at most.
    """

    def __init__(self, *, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self._max = max_records
        self._records: dict[str, Signed[CapacityRecord]] = {}
        # Exchange answers and gossip repeat the same records often: bytes already
        # verified and held are recognised without a second signature check.
        self._by_envelope: dict[bytes, str] = {}

    def __len__(self) -> int:
        return len(self._records)

    def accept(
        self, data: bytes, *, now_ms: int, peer_id: str | None = None
    ) -> Signed[CapacityRecord]:
        """Open and check a record envelope; keep it if it is the newest of its peer.

        Args:
            data: the envelope bytes.
            now_ms: the current time.
            peer_id: the peer the record must belong to (a DHT key names one), or
                None when the record counts for whichever peer signed it.

        Returns:
            The record now held for its peer (the one given, or a newer one held).

        Raises:
            MalformedMessage, TooLarge: not a capacity envelope (a receipt, garbage).
            BadSignature: forged, or signed by another peer than ``peer_id``.
            Expired: expired, from the future, or living too long.
        """
        held_same = self._same_as_held(data, peer_id)
        if held_same is not None and held_same.message.expires_ms >= now_ms:
            return held_same  # the exact bytes already verified: skip the signature check
        signed = open_signed(data, CapacityRecord)
        expected = None if peer_id is None else public_key_from_peer_id(peer_id)
        verify_capacity(signed, now_ms=now_ms, expected_peer=expected)
        return self.add(signed, now_ms=now_ms)

    def add(self, signed: Signed[CapacityRecord], *, now_ms: int) -> Signed[CapacityRecord]:
        """Keep an already verified record (our own, freshly signed) if it is the newest.

        Returns:
            The record now held for its peer.
        """
        peer_id = peer_id_from_public_key(signed.message.peer)
        held = self._records.get(peer_id)
        if held is not None and held.message.created_ms > signed.message.created_ms:
            return held
        self._put(peer_id, signed)
        if len(self._records) > self._max:
            self._evict(now_ms)
        return self._records.get(peer_id, signed)

    def get(self, peer_id: str, *, now_ms: int) -> Signed[CapacityRecord] | None:
        """The live record of ``peer_id``, or None (an expired one is dropped)."""
        signed = self._records.get(peer_id)
        if signed is None:
            return None
        if signed.message.expires_ms < now_ms:
            self._drop(peer_id)
            return None
        return signed

    def live(self, *, now_ms: int, model_root: bytes | None = None) -> list[Signed[CapacityRecord]]:
        """Every live record (of peers serving ``model_root`` when given), expired ones dropped."""
        self.prune(now_ms)
        return [
            s
            for s in self._records.values()
            if model_root is None or model_root in s.message.models
        ]

    def live_items(
        self, *, now_ms: int, model_root: bytes | None = None
    ) -> list[tuple[str, Signed[CapacityRecord]]]:
        """Like :meth:`live`, as ``(peer id, record)`` pairs."""
        self.prune(now_ms)
        return [
            (pid, s)
            for pid, s in self._records.items()
            if model_root is None or model_root in s.message.models
        ]

    def peer_ids(self) -> list[str]:
        """The peers whose records are held (live or not yet pruned)."""
        return list(self._records)

    def discard(self, peer_id: str) -> None:
        """Forget ``peer_id``'s record (its peer left, or it proved useless)."""
        self._drop(peer_id)

    def prune(self, now_ms: int) -> int:
        """Drop expired records; return how many went."""
        dead = [pid for pid, s in self._records.items() if s.message.expires_ms < now_ms]
        for pid in dead:
            self._drop(pid)
        return len(dead)

    def _same_as_held(self, data: bytes, peer_id: str | None) -> Signed[CapacityRecord] | None:
        holder = self._by_envelope.get(data)
        if holder is None or (peer_id is not None and holder != peer_id):
            return None
        return self._records.get(holder)

    def _put(self, peer_id: str, signed: Signed[CapacityRecord]) -> None:
        old = self._records.get(peer_id)
        if old is not None:
            self._by_envelope.pop(old.envelope, None)
        self._records[peer_id] = signed
        self._by_envelope[signed.envelope] = peer_id

    def _drop(self, peer_id: str) -> None:
        old = self._records.pop(peer_id, None)
        if old is not None:
            self._by_envelope.pop(old.envelope, None)

    def _evict(self, now_ms: int) -> None:
        self.prune(now_ms)
        excess = len(self._records) - self._max
        if excess <= 0:
            return
        soonest = heapq.nsmallest(
            excess, self._records.items(), key=lambda item: item[1].message.expires_ms
        )
        for pid, _ in soonest:
            self._drop(pid)
