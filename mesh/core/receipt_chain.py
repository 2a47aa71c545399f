"""A worker's receipt chain as bytes: the record format and the chain rules.

Format of a receipt log: a sequence of records, each a 4-byte big-endian
length followed by that many bytes of a receipt envelope (canonical
MessagePack). Record ``n`` holds the receipt with ``seq = n``, whose ``prev`` is
the digest of record ``n - 1``'s envelope (32 zero bytes for the first).

Pure functions over bytes: the file that holds a chain (appends, fsync, locks)
is the node's (:mod:`mesh.node.receipt_log`). A torn final record -- a crash in
the middle of a write -- is reported as bytes past the last good record, for
the keeper to cut; anything else that does not check is an error, because
continuing a broken chain silently would hide tampering.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from mesh.core.envelope import Signed, open_signed
from mesh.core.messages import Receipt
from mesh.core.receipts import ZERO_HASH
from mesh.errors import MeshError, VerificationError

RECORD_LENGTH = struct.Struct(">I")
# A receipt with the largest commitment is ~70 KB; a bigger length is corruption.
MAX_RECORD_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where a checked chain ends.

    Attributes:
        count: complete, valid records (the next receipt's ``seq``).
        prev: digest of the last record's envelope (the next receipt's ``prev``).
        good_bytes: length of the prefix holding those records; bytes after it
            are a torn final record.
        worker: the chain's worker key (``b""`` for an empty chain).
    """

    count: int
    prev: bytes
    good_bytes: int
    worker: bytes


def encode_record(signed: Signed[Receipt]) -> bytes:
    """One record: the envelope's length, then the envelope."""
    return RECORD_LENGTH.pack(len(signed.envelope)) + signed.envelope


def iter_records(data: bytes, *, source: str) -> Iterator[tuple[int, bytes]]:
    """Yield (end offset, envelope bytes) of each complete record; a torn tail ends it.

    Raises:
        VerificationError: a record declares an impossible length.
    """
    offset = 0
    while len(data) - offset >= RECORD_LENGTH.size:
        (length,) = RECORD_LENGTH.unpack_from(data, offset)
        if length > MAX_RECORD_BYTES:
            raise VerificationError(f"receipt log {source}: record of {length} bytes at {offset}")
        end = offset + RECORD_LENGTH.size + length
        if end > len(data):
            return  # torn tail
        yield end, data[offset + RECORD_LENGTH.size : end]
        offset = end


def open_records(data: bytes, *, source: str) -> list[Signed[Receipt]]:
    """Every complete record opened (signatures verified), in order; links not checked.

    Raises:
        VerificationError: a record's length is impossible.
        MeshError: a record is not a valid signed receipt (from :func:`open_signed`).
    """
    return [open_signed(raw, Receipt) for _, raw in iter_records(data, source=source)]


def check_chain(data: bytes, *, source: str, worker: bytes | None = None) -> ChainState:
    """Check every complete record: signature, one worker, consecutive ``seq``, ``prev`` links.

    Args:
        data: the log's bytes.
        source: names the log in errors.
        worker: the key every record must be signed by; None takes the first record's.

    Raises:
        VerificationError: a complete record does not check (tampered, foreign, broken link).
    """
    count, prev, good, owner = 0, ZERO_HASH, 0, worker
    for end, raw in iter_records(data, source=source):
        try:
            signed = open_signed(raw, Receipt)
        except MeshError as exc:
            msg = f"receipt log {source}: record {count} is invalid: {exc}"
            raise VerificationError(msg) from exc
        receipt = signed.message
        if owner is None:
            owner = receipt.worker
        if receipt.worker != owner:
            raise VerificationError(f"receipt log {source}: record {count} is another worker's")
        if receipt.seq != count or receipt.prev != prev:
            raise VerificationError(f"receipt log {source}: chain broken at record {count}")
        count, prev, good = count + 1, signed.digest, end
    return ChainState(count=count, prev=prev, good_bytes=good, worker=owner or b"")
