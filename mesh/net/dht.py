"""Glue between our record validators and py-libp2p 0.8.1's Kademlia DHT.

What the library does and does not do (read in ``kad_dht/kad_dht.py``):
- ``put_value`` validates locally before storing; an inbound PUT_VALUE is
  validated before it is stored; values fetched from other peers in
  ``get_value`` are validated. But ``get_value`` answers from the local store
  first WITHOUT validating and without asking anyone, so an expired or
  superseded record would be served for 24 h.
- ``find_providers`` answers from the local 48 h cache alone as soon as it holds
  any entry for the key, so a client would never learn of new providers (or of
  the old ones dying).
:func:`install_local_cache_bypass` lets our own lookups skip both shortcuts
(the adapter then merges and validates the local copy itself) while inbound
queries from other peers keep using the stores.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Record
from libp2p.peer.peerinfo import PeerInfo
from libp2p.records.validator import Validator

from mesh.core.capacity import RecordValidator
from mesh.errors import MeshError

logger = logging.getLogger(__name__)

# Picks the best among valid values (index into the list); default: the first.
RecordSelector = Callable[[Sequence[bytes]], int]


class RecordRejected(ValueError):
    """Raised into libp2p by a validator; the DHT catches ValueError-like errors
    on inbound records and refuses to store them."""


class MeshRecordValidator(Validator):
    """A libp2p ``Validator`` wrapping our callback (MeshError means invalid)."""

    def __init__(self, validator: RecordValidator, selector: RecordSelector | None = None) -> None:
        self._validator = validator
        self._selector = selector

    def validate(self, key: str, value: bytes) -> None:
        """Reject with :class:`RecordRejected` (from the MeshError) when invalid."""
        try:
            self._validator(key, value)
        except MeshError as exc:
            logger.debug("record under %s rejected: %s", key, exc)
            raise RecordRejected(str(exc)) from exc

    def check(self, key: str, value: bytes) -> None:
        """Our own call: raises the validator's MeshError unchanged."""
        self._validator(key, value)

    def select(self, key: str, values: list[bytes]) -> int:
        """Index of the best valid value; invalid values are never selected."""
        valid = [i for i, v in enumerate(values) if self.is_valid(key, v)]
        if not valid:
            # The library calls select only on validated values; if all expired
            # meanwhile, keep the first (the caller re-validates before use).
            return 0
        if self._selector is None:
            return valid[0]
        chosen = self._selector([values[i] for i in valid])
        if not 0 <= chosen < len(valid):
            logger.warning("record selector returned %d of %d, using the first", chosen, len(valid))
            return valid[0]
        return valid[chosen]

    def is_valid(self, key: str, value: bytes) -> bool:
        """True when the callback accepts ``value``."""
        try:
            self._validator(key, value)
        except MeshError:
            return False
        return True


_NETWORK_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mesh_dht_network_only", default=False
)


def install_local_cache_bypass(dht: KadDHT) -> None:
    """Make the local-store shortcuts of ``find_providers``/``get_value`` skippable.

    The stores' ``get_providers`` and ``get`` are wrapped on this instance only:
    inside :func:`network_lookup` (a context variable, so only our task and the
    tasks it spawns see it) they return nothing and the library asks the
    network; every other caller (inbound GET_PROVIDERS, GET_VALUE, PUT_VALUE)
    sees the stores as they are.
    """
    providers = dht.provider_store
    values = dht.value_store
    original_providers = providers.get_providers
    original_get = values.get

    def get_providers(key: bytes) -> list[PeerInfo]:
        if _NETWORK_ONLY.get():
            return []
        result: list[PeerInfo] = original_providers(key)
        return result

    def get(key: bytes) -> Record | None:
        if _NETWORK_ONLY.get():
            return None
        record: Record | None = original_get(key)
        return record

    # Instance attributes, not subclasses: the DHT builds its own stores.
    setattr(providers, "get_providers", get_providers)  # noqa: B010
    setattr(providers, "mesh_local_providers", original_providers)  # noqa: B010
    setattr(values, "get", get)  # noqa: B010
    setattr(values, "mesh_local_get", original_get)  # noqa: B010


@contextmanager
def network_lookup() -> Iterator[None]:
    """Within this block, a bypassed DHT's lookups skip the local stores."""
    token = _NETWORK_ONLY.set(True)
    try:
        yield
    finally:
        _NETWORK_ONLY.reset(token)


def local_providers(dht: KadDHT, key: bytes) -> list[PeerInfo]:
    """Provider records this peer holds for ``key`` (its own and ones sent to it)."""
    getter = getattr(dht.provider_store, "mesh_local_providers", dht.provider_store.get_providers)
    result: list[PeerInfo] = getter(key)
    return result


def local_value(dht: KadDHT, key: bytes) -> bytes | None:
    """The value this peer's store holds under ``key``, unvalidated."""
    getter = getattr(dht.value_store, "mesh_local_get", dht.value_store.get)
    record = getter(key)
    return None if record is None else bytes(record.value)
