"""The record exchange (``/mesh/records/1.0.0``): ask a peer for the capacity records it holds.

Every peer -- node or client -- answers with the live signed capacity records in
its :class:`~mesh.core.record_book.RecordBook`, filtered by model root and
capped in count and bytes. Records are self-authenticating, so the asker checks
each one exactly as it checks DHT and gossip records (``RecordBook.accept``):
whoever hands a record out cannot alter it. One round trip to a bootstrap peer
then tells a fresh client who serves a model, how loaded each worker is and
where to dial it.

On the wire (canonical MessagePack maps)::

    query  = {"kind": "records-query", "limit": int, "models": [bin(32)...], "own": bin}
    answer = {"kind": "records", "records": [bin...]}

- ``models``: only records naming one of these roots (empty: any record);
- ``limit``: at most this many records back (the answerer's cap applies too);
- ``own``: the asker's own capacity record envelope, or empty. A node joining
  the mesh sends its record to its bootstrap peers this way, so they can hand it
  out at once, long before the DHT or gossip would carry it;
- ``records``: capacity envelope bytes. When more records match than fit, the
  answerer sends a random sample, so askers of a big mesh see different parts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar

from mesh.core import canonical
from mesh.core.envelope import Signed
from mesh.core.identity import public_key_from_peer_id
from mesh.core.messages import CapacityRecord
from mesh.core.record_book import RecordBook
from mesh.core.schema import Bytes, Int, List, WireMessage
from mesh.errors import MalformedMessage

# One record's envelope is ~450 bytes in practice; its schema allows 16 addrs of
# 256 bytes and 64 models with names of 128 bytes (~14 KB), so 16 KiB bounds it.
MAX_RECORD_BYTES = 16 * 1024
# Records per answer: a 100-node testnet in one answer (measured ~450 B each,
# 45 KB), a bigger mesh sampled. 256 KiB stays far under one 4 MiB frame.
MAX_ANSWER_RECORDS = 256
MAX_ANSWER_BYTES = 256 * 1024
# Model roots per query: a client asks for one model, or a handful.
MAX_QUERY_MODELS = 16
# Query and answer together are bounded by these caps; a message bigger than
# this is garbage before it is decoded.
MAX_QUERY_BYTES = MAX_RECORD_BYTES + MAX_QUERY_MODELS * 40 + 256
MAX_ANSWER_MESSAGE_BYTES = MAX_ANSWER_BYTES + MAX_ANSWER_RECORDS * 8 + 256


@dataclass(frozen=True, slots=True)
class RecordsQuery(WireMessage):
    """Ask a peer for live capacity records (see the module docstring)."""

    WIRE_CONSTANTS: ClassVar[dict[str, str]] = {"kind": "records-query"}

    models: Annotated[tuple[bytes, ...], List(Bytes(32), MAX_QUERY_MODELS)]
    limit: Annotated[int, Int(0, MAX_ANSWER_RECORDS)]
    own: Annotated[bytes, Bytes(0, MAX_RECORD_BYTES)]

    def encode(self) -> bytes:
        """The canonical bytes of this query."""
        return canonical.encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> RecordsQuery:
        """Decode a query.

        Raises:
            MalformedMessage, TooLarge: not a records query within the caps.
        """
        return cls.from_wire(canonical.decode(data, max_bytes=MAX_QUERY_BYTES))


@dataclass(frozen=True, slots=True)
class RecordsAnswer(WireMessage):
    """Capacity record envelopes, each to be checked by the asker."""

    WIRE_CONSTANTS: ClassVar[dict[str, str]] = {"kind": "records"}

    records: Annotated[tuple[bytes, ...], List(Bytes(1, MAX_RECORD_BYTES), MAX_ANSWER_RECORDS)]

    def encode(self) -> bytes:
        """The canonical bytes of this answer."""
        return canonical.encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> RecordsAnswer:
        """Decode an answer (the records inside are not checked here).

        Raises:
            MalformedMessage, TooLarge: not a records answer within the caps.
        """
        return cls.from_wire(canonical.decode(data, max_bytes=MAX_ANSWER_MESSAGE_BYTES))


def select_records(
    book: RecordBook,
    query: RecordsQuery,
    *,
    now_ms: int,
    rng: random.Random,
    exclude: str | None = None,
) -> RecordsAnswer:
    """The answer to ``query`` from ``book``: matching live records, sampled to the caps.

    Args:
        book: the answerer's records.
        query: what was asked.
        now_ms: the current time (expired records are never handed out).
        rng: picks the sample when more records match than fit.
        exclude: a peer whose record is left out (the asker: it knows its own).
    """
    wanted = set(query.models)
    skip = _key_of(exclude)
    matching: list[Signed[CapacityRecord]] = [
        s
        for s in book.live(now_ms=now_ms)
        if (not wanted or wanted.intersection(s.message.models)) and s.key != skip
    ]
    limit = min(query.limit, MAX_ANSWER_RECORDS)
    if len(matching) > limit:
        matching = rng.sample(matching, limit)
    return RecordsAnswer(records=_within_bytes([s.envelope for s in matching]))


def _within_bytes(envelopes: Sequence[bytes]) -> tuple[bytes, ...]:
    kept: list[bytes] = []
    total = 0
    for envelope in envelopes:
        if total + len(envelope) > MAX_ANSWER_BYTES:
            continue  # a smaller one further on may still fit
        kept.append(envelope)
        total += len(envelope)
    return tuple(kept)


def _key_of(peer_id: str | None) -> bytes | None:
    if peer_id is None:
        return None
    try:
        return public_key_from_peer_id(peer_id)
    except MalformedMessage:
        return None  # not an Ed25519 PeerID: it cannot have a record to leave out
