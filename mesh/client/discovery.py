"""Discovery: who serves a model, and their signed capacity records.

``find_providers(model_root)`` under a deadline gives candidate peers (libp2p's
provider records may be stale: liveness is learnt by talking to them). Each
candidate's capacity record (``/mesh-cap/<peer id>``) is fetched concurrently
under the same deadline and checked (signature, the key named by the DHT key,
expiry); records also arrive as load gossip on ``LOAD_TOPIC`` and replace older
ones. A record that does not check is dropped, never used.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import trio

from mesh.aio.clock import WallClock
from mesh.client.selection import Load
from mesh.core.capacity import capacity_key, open_capacity
from mesh.core.envelope import Signed, open_signed
from mesh.core.identity import peer_id_from_public_key
from mesh.core.messages import CapacityRecord
from mesh.core.signing import verify_capacity
from mesh.errors import MeshError
from mesh.net.interface import LOAD_TOPIC, Network, PeerAddr

logger = logging.getLogger(__name__)

MAX_PROVIDERS = 20
# Capacity records fetched from the DHT per lookup, at most. Each is a DHT walk;
# fetching every candidate's record made a cold lookup grow with the mesh
# (1.2 s on 10 nodes, 5 s on 20, measured). Candidates without a record are
# still chosen (as half loaded); their records arrive by gossip or later lookups.
MAX_RECORD_FETCHES = 4
# How long a provider list is reused before asking the DHT again.
PROVIDER_CACHE_S = 30.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A peer that may serve a model, with its verified capacity record if known."""

    peer: PeerAddr
    record: CapacityRecord | None

    @property
    def load(self) -> Load | None:
        if self.record is None:
            return None
        return Load(self.record.queue_depth, self.record.queue_capacity)


class Discovery:
    """Finds providers and keeps the freshest verified capacity record per peer."""

    def __init__(self, network: Network, *, wall_clock: WallClock) -> None:
        self._network = network
        self._now_ms = wall_clock
        self._records: dict[str, Signed[CapacityRecord]] = {}
        self._providers: dict[bytes, tuple[float, list[PeerAddr]]] = {}
        self.rejected = 0  # records dropped because they did not check

    def record(self, peer_id: str) -> CapacityRecord | None:
        """The cached record of ``peer_id`` if still valid."""
        signed = self._records.get(peer_id)
        if signed is None:
            return None
        if signed.message.expires_ms < self._now_ms():
            del self._records[peer_id]
            return None
        return signed.message

    def forget_provider(self, model_root: bytes, peer_id: str) -> None:
        """Drop ``peer_id`` from the cached providers of ``model_root`` (it said it does
        not serve the model: its provider record was stale)."""
        cached = self._providers.get(model_root)
        if cached is not None:
            expiry, peers = cached
            self._providers[model_root] = (expiry, [p for p in peers if p.peer_id != peer_id])

    def accept(self, peer_id: str | None, data: bytes) -> CapacityRecord | None:
        """Check a capacity record; cache it if newer than the one held. None if bad.

        Args:
            peer_id: the peer the record must belong to (the DHT key's), or None
                for gossip: records are self-authenticating, so a relayed record
                counts for the peer that signed it, whoever forwarded it.
            data: the envelope bytes.
        """
        try:
            if peer_id is None:
                signed = open_signed(data, CapacityRecord)
                verify_capacity(signed, now_ms=self._now_ms())
                peer_id = peer_id_from_public_key(signed.message.peer)
            else:
                signed = open_capacity(data, peer_id=peer_id, now_ms=self._now_ms())
        except MeshError as exc:
            self.rejected += 1
            logger.info("capacity record of %s rejected: %s", peer_id or "gossip", exc)
            return None
        held = self._records.get(peer_id)
        if held is None or held.message.created_ms <= signed.message.created_ms:
            self._records[peer_id] = signed
        return self._records[peer_id].message

    async def fetch_record(self, peer_id: str, *, timeout: float) -> CapacityRecord | None:  # noqa: ASYNC109
        """Get ``peer_id``'s record from the DHT (validated), or None."""
        try:
            data = await self._network.get_record(capacity_key(peer_id), timeout=timeout)
        except MeshError as exc:
            logger.debug("no capacity record for %s: %s", peer_id, exc)
            return None
        return None if data is None else self.accept(peer_id, data)

    async def candidates(
        self,
        model_root: bytes,
        *,
        timeout: float,  # noqa: ASYNC109
        fresh: bool = False,
        max_fetches: int | None = MAX_RECORD_FETCHES,
    ) -> list[Candidate]:
        """Peers announcing ``model_root``, with their records; peers whose valid
        record says they do not serve the model are left out.

        At most ``max_fetches`` missing records are fetched (a random sample;
        ``None``: all of them).

        Provider lists are cached for ``PROVIDER_CACHE_S`` (a DHT query costs tens
        of ms, more than a tiny model's whole task); ``fresh`` asks the DHT again,
        which the client does when every cached peer failed.
        """
        deadline = trio.current_time() + timeout
        cached = self._providers.get(model_root)
        if not fresh and cached is not None and cached[0] > trio.current_time():
            peers = cached[1]
        else:
            try:
                peers = await self._network.find_providers(
                    model_root, count=MAX_PROVIDERS, timeout=timeout
                )
            except MeshError as exc:
                logger.info("find_providers failed: %s", exc)
                return []
            peers = [p for p in peers if p.peer_id != self._network.peer_id]
            if peers:
                self._providers[model_root] = (trio.current_time() + PROVIDER_CACHE_S, peers)
        missing = [p.peer_id for p in peers if self.record(p.peer_id) is None]
        if max_fetches is not None and len(missing) > max_fetches:
            missing = random.sample(missing, max_fetches)
        await self._fill_records(missing, deadline=deadline)
        found = []
        for peer in peers:
            record = self.record(peer.peer_id)
            # A draining record says the peer is leaving (mesh.node.departure): drop it.
            if record is not None and (record.draining or model_root not in record.models):
                continue
            found.append(Candidate(peer, record))
        return found

    async def live_records(self, *, timeout: float) -> list[tuple[PeerAddr, CapacityRecord]]:  # noqa: ASYNC109
        """Known peers that have a valid capacity record (``mesh peers``)."""
        deadline = trio.current_time() + timeout
        peers = [p for p in self._network.known_peers() if p.peer_id != self._network.peer_id]
        await self._fill_records([p.peer_id for p in peers], deadline=deadline, refresh=True)
        result = []
        for peer in peers:
            record = self.record(peer.peer_id)
            if record is not None and not record.draining:  # a leaving peer is not live
                result.append((peer, record))
        return result

    async def _fill_records(
        self, peer_ids: list[str], *, deadline: float, refresh: bool = False
    ) -> None:
        missing = [pid for pid in peer_ids if refresh or self.record(pid) is None]
        if not missing:
            return

        async def one(pid: str) -> None:
            await self.fetch_record(pid, timeout=max(0.0, deadline - trio.current_time()))

        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                for pid in missing:
                    nursery.start_soon(one, pid)

    async def watch_gossip(self) -> None:
        """Take load updates from ``LOAD_TOPIC`` until cancelled."""
        try:
            channel = await self._network.subscribe(LOAD_TOPIC)
        except MeshError as exc:
            # Gossip only makes load figures fresher; DHT records still work.
            logger.warning("no load gossip: %s", exc)
            return
        async with channel:
            async for _sender, data in channel:
                self.accept(None, data)
