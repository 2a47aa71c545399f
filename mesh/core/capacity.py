"""Capacity records in the DHT: their keys, and the check every peer runs on them.

A node's signed :class:`~mesh.core.messages.CapacityRecord` is stored under the
record key ``/mesh-cap/<peer id>``. Record keys in general are
``/<namespace>/<name>``: the namespace selects the validator a peer runs on put
and get (:func:`split_record_key` is the one parser of that form).

A capacity record is self-authenticating: whoever hands it out (the DHT, gossip,
a peer answering an exchange) cannot alter it, and :func:`open_capacity` checks
that it is signed by the peer its key names and is live at the given time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mesh.core.envelope import Signed, open_signed
from mesh.core.identity import public_key_from_peer_id
from mesh.core.messages import CapacityRecord
from mesh.core.signing import verify_capacity
from mesh.errors import MalformedMessage, MeshError

CAPACITY_NAMESPACE = "mesh-cap"  # DHT value records: /mesh-cap/<peer id>

# Validates one record value stored under a key; raises a MeshError for a value
# that must not be stored or returned (forged, expired, under the wrong key).
RecordValidator = Callable[[str, bytes], None]


def record_key(namespace: str, name: str) -> str:
    """The record key ``/<namespace>/<name>``."""
    return f"/{namespace}/{name}"


def split_record_key(key: str) -> tuple[str, str]:
    """``(namespace, name)`` of a record key ``/<namespace>/<name>``.

    Raises:
        MalformedMessage: the key does not have that form.
    """
    empty, sep, rest = key.partition("/")
    namespace, sep2, name = rest.partition("/")
    if empty or not sep or not sep2 or not namespace or not name:
        raise MalformedMessage(f"not a record key of the form /<namespace>/<name>: {key[:80]!r}")
    return namespace, name


def capacity_key(peer_id: str) -> str:
    """The DHT key of a peer's capacity record."""
    return record_key(CAPACITY_NAMESPACE, peer_id)


def open_capacity(data: bytes, *, peer_id: str, now_ms: int) -> Signed[CapacityRecord]:
    """Open and check a capacity record claimed to belong to ``peer_id``.

    Raises:
        MalformedMessage: not a capacity envelope, or ``peer_id`` is not a PeerID.
        BadSignature: bad signature, or signed by another peer than ``peer_id``.
        Expired: expired, from the future, or living too long.
    """
    signed = open_signed(data, CapacityRecord)
    verify_capacity(signed, now_ms=now_ms, expected_peer=public_key_from_peer_id(peer_id))
    return signed


def select_newest_capacity(values: Sequence[bytes]) -> int:
    """Index of the newest capacity record among valid ones (latest ``created_ms``;
    on a tie, a draining one): the DHT's choice when peers hold different values.

    Without it the DHT keeps whichever value it met first, so a node's departure
    record (``draining``, mesh.node.departure) could lose to its last normal advert.
    Values that do not open rank last (the caller validated them already).
    """
    best, best_key = 0, (-1, False)
    for index, value in enumerate(values):
        try:
            record = open_signed(value, CapacityRecord).message
        except MeshError:
            continue
        key = (record.created_ms, record.draining)
        if key > best_key:
            best, best_key = index, key
    return best


# The record selector of each namespace whose values have an order (others: the first).
RECORD_SELECTORS: dict[str, Callable[[Sequence[bytes]], int]] = {
    CAPACITY_NAMESPACE: select_newest_capacity,
}


def capacity_validator(now_ms: Callable[[], int]) -> RecordValidator:
    """The check for ``/mesh-cap/<peer id>`` records that every peer registers.

    Args:
        now_ms: the current wall-clock time in epoch milliseconds (read per call).
    """

    def validate(key: str, value: bytes) -> None:
        namespace, peer_id = split_record_key(key)
        if namespace != CAPACITY_NAMESPACE:
            raise MalformedMessage(f"not a capacity key: {key[:80]!r}")
        open_capacity(value, peer_id=peer_id, now_ms=now_ms())

    return validate
