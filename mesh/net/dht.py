"""Glue between our record validators and py-libp2p 0.8.1's Kademlia DHT.

What the library does and does not do (read in ``kad_dht/kad_dht.py``):
- ``put_value`` validates locally before storing; an inbound PUT_VALUE is
  validated before it is stored; values fetched from other peers in
  ``get_value`` are validated. But ``get_value`` answers from the local store
  first WITHOUT validating, so an expired record would be served for 24 h: the
  adapter validates every value itself before returning it.
- ``find_providers`` answers from the local 48 h cache alone as soon as it holds
  any entry for the key, so a client would never learn of new providers (or of
  the old ones dying). :func:`install_provider_cache_bypass` lets our own lookups
  skip that shortcut while inbound GET_PROVIDERS keep using the store.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer.peerinfo import PeerInfo
from libp2p.records.validator import Validator

from mesh.errors import MeshError
from mesh.net.interface import RecordValidator

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
        valid = [i for i, v in enumerate(values) if self._is_valid(key, v)]
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

    def _is_valid(self, key: str, value: bytes) -> bool:
        try:
            self._validator(key, value)
        except MeshError:
            return False
        return True


_SKIP_LOCAL_PROVIDERS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mesh_skip_local_providers", default=False
)


def install_provider_cache_bypass(dht: KadDHT) -> None:
    """Make the local-cache shortcut of ``find_providers`` skippable per task.

    The store's ``get_providers`` is wrapped on this instance only: inside
    :func:`network_providers_lookup` (a context variable, so only our task and
    the tasks it spawns see it) it returns nothing and the library goes to the
    network; every other caller (inbound GET_PROVIDERS) sees the store as is.
    """
    store = dht.provider_store
    original = store.get_providers

    def get_providers(key: bytes) -> list[PeerInfo]:
        if _SKIP_LOCAL_PROVIDERS.get():
            return []
        result: list[PeerInfo] = original(key)
        return result

    # Instance attributes, not a subclass: the DHT builds its own store.
    setattr(store, "get_providers", get_providers)  # noqa: B010
    setattr(store, "mesh_local_providers", original)  # noqa: B010


@contextmanager
def network_providers_lookup() -> Iterator[None]:
    """Within this block, ``find_providers`` of a bypassed DHT asks the network."""
    token = _SKIP_LOCAL_PROVIDERS.set(True)
    try:
        yield
    finally:
        _SKIP_LOCAL_PROVIDERS.reset(token)


def local_providers(dht: KadDHT, key: bytes) -> list[PeerInfo]:
    """Provider records this peer holds for ``key`` (its own and ones sent to it)."""
    getter = getattr(dht.provider_store, "mesh_local_providers", dht.provider_store.get_providers)
    result: list[PeerInfo] = getter(key)
    return result
