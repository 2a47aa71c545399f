"""The node's adverts: provider records, a signed capacity record, load gossip.

- Provider records under each served model_root say "who serves X"; they are
  re-announced every refresh period because libp2p's own 48 h records say
  nothing about liveness.
- A :class:`~mesh.core.messages.CapacityRecord`, signed by the node, is put under
  ``/mesh-cap/<peer id>`` every refresh period and expires a few periods later;
  :func:`mesh.core.capacity.capacity_validator` is what every peer runs on put and get.
- Load changes are gossiped on ``LOAD_TOPIC`` as the same signed record (about
  400 bytes, far under the 64 KiB pubsub cap), so clients verify gossip exactly
  like DHT records and no new message kind is needed; every refresh period the
  record is gossiped even when the load did not change, so the copies other
  peers hold never expire while the node lives.
- Every record built goes into the node's own record book (it answers the record
  exchange from it), and is pushed to the bootstrap peers with a records query
  (:meth:`Advertiser.announce`): one round trip, after which they hand it out to
  every client that asks. This is what makes a node findable within a second of
  its start; the DHT follows in the background.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Iterator

import trio

from mesh.aio.clock import WallClock
from mesh.core.capacity import capacity_key
from mesh.core.envelope import Signed, sign_message
from mesh.core.identity import Identity
from mesh.core.messages import CapacityRecord
from mesh.errors import MeshError
from mesh.net.exchange import RecordExchange
from mesh.net.interface import LOAD_TOPIC, Network
from mesh.node.config import NodeConfig
from mesh.node.runner import ServedModels

logger = logging.getLogger(__name__)

# Delays of the first re-announcements after start (seconds), then every period.
EARLY_REFRESH_S = (2.0, 5.0, 15.0)
# Records a node takes from each bootstrap peer per push: a sample, not the mesh.
# Each period every node asks; a bootstrap peer of N nodes then sends N samples
# of ~32 x 450 B per period, where whole books would cost N x N records (the
# simulation in benchmarks/scenarios/simulation.py measures both ends).
PULL_RECORDS = 32


class Advertiser:
    """Keeps this node's provider records, capacity record and load gossip fresh."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        network: Network,
        runner: ServedModels,
        wall_clock: WallClock,
        throughput_milli: Callable[[], int],
        queue_depth: Callable[[], int],
        queue_capacity: Callable[[], int],
        memory_free_mb: Callable[[], int] = lambda: 0,
        addrs: Callable[[], list[str]] | None = None,
        draining: Callable[[], bool] = lambda: False,
        exchange: RecordExchange | None = None,
    ) -> None:
        self._config = config
        self._exchange = exchange
        self._identity: Identity = config.identity
        self._network = network
        self._runner = runner
        self._now_ms = wall_clock
        self._throughput_milli = throughput_milli
        self._queue_depth = queue_depth
        self._queue_capacity = queue_capacity
        self._memory_free_mb = memory_free_mb
        # The addresses others dial (announced, or listen ones with 0.0.0.0 expanded).
        self._addrs = addrs or network.listen_addrs
        # True once the node is leaving: records then say so (mesh.node.departure).
        self._draining = draining
        self._last_gossiped: tuple[int, int] | None = None
        self.published = 0  # capacity records put (for tests and stats)
        self.announced = 0  # bootstrap peers that took our record by exchange

    def build_record(self) -> Signed[CapacityRecord]:
        """A freshly signed capacity record describing this node now."""
        now = self._now_ms()
        models = sorted(self._runner.models.items())
        record = CapacityRecord(
            peer=self._identity.public_key,
            addrs=tuple(self._addrs()[:16]),
            models=tuple(root for root, _ in models),
            model_names=tuple(name for _, name in models),
            device=self._runner.device,
            memory_free_mb=max(0, self._memory_free_mb()),
            queue_depth=max(0, self._queue_depth()),
            queue_capacity=max(0, self._queue_capacity()),
            throughput_milli=max(0, self._throughput_milli()),
            price_micro=self._config.price_micro,
            region=self._config.region,
            created_ms=now,
            expires_ms=now + self._config.capacity_ttl_ms,
            draining=self._draining(),
        )
        signed = sign_message(self._identity, record)
        if self._exchange is not None:
            self._exchange.book.add(signed, now_ms=now)
        return signed

    async def announce(self) -> int:
        """Push a fresh record to the bootstrap peers (and learn theirs); return how many took it.

        Each answer carries a sample of the records that peer holds (at most
        ``PULL_RECORDS``), so a node also learns the mesh it joined and can hand
        part of it to clients that bootstrap through it.
        """
        if self._exchange is None:
            return 0
        peers = [p for p in self._network.bootstrap_peers() if p.peer_id != self._network.peer_id]
        if not peers:
            return 0
        answers = await self._exchange.ask_many(
            peers,
            own=self.build_record(),
            limit=PULL_RECORDS,
            timeout=self._config.net_timeout_s,
        )
        took = sum(a.error is None for a in answers)
        self.announced += took
        if took < len(peers):
            logger.info("record pushed to %d of %d bootstrap peers", took, len(peers))
        return took

    async def advertise_once(self) -> None:
        """Put the capacity record and announce every served model (each with a deadline)."""
        timeout = self._config.net_timeout_s
        signed = self.build_record()
        try:
            await self._network.put_record(
                capacity_key(self._network.peer_id), signed.envelope, timeout=timeout
            )
            self.published += 1
        except MeshError as exc:
            # Refused or unreachable (a record superseded by a clock-skewed one,
            # no DHT peers yet): the next period tries again; never fatal.
            logger.warning("capacity record not stored: %s", exc)
        for root in self._runner.models:
            try:
                await self._network.provide(root, timeout=timeout)
            except MeshError as exc:
                logger.warning("provider record for %s not stored: %s", root.hex()[:8], exc)

    async def gossip_load(self, *, force: bool = False) -> bool:
        """Publish the record on ``LOAD_TOPIC`` if the load changed; True when sent."""
        load = (self._queue_depth(), self._throughput_milli())
        if not force and load == self._last_gossiped:
            return False
        signed = self.build_record()
        try:
            await self._network.publish(
                LOAD_TOPIC, signed.envelope, timeout=self._config.net_timeout_s
            )
        except MeshError as exc:
            logger.debug("load gossip not sent: %s", exc)
            return False
        self._last_gossiped = load
        return True

    async def run(self) -> None:
        """Keep every advert fresh, until cancelled (the node announced once already).

        Three loops: record pushes to the bootstrap peers and a forced gossip,
        early and then every period (cheap: one round trip each); DHT adverts,
        the first after a random delay of up to ``advert_jitter_s``, then every
        period (two DHT walks each, the expensive part); load gossip on change.
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._dht_loop)
            nursery.start_soon(self._gossip_loop)

    def _schedule(self) -> Iterator[float]:
        period = self._config.capacity_refresh_s
        early = (d for d in EARLY_REFRESH_S if d < period)
        return itertools.chain(early, itertools.repeat(period))

    async def _announce_loop(self) -> None:
        # Pushed again soon a few times, then each period: a bootstrap peer that
        # was down or too busy at our start hears of us within seconds, and the
        # copies others hold are renewed well before they expire.
        for delay in self._schedule():
            await trio.sleep(delay)
            await self.announce()
            await self.gossip_load(force=True)

    async def _dht_loop(self) -> None:
        jitter = self._config.advert_jitter_s
        if jitter > 0:
            await trio.sleep(random.uniform(0.0, jitter))
        lonely = await self._advertise_noting_peers()
        for delay in self._schedule():
            if delay < self._config.capacity_refresh_s and not lonely:
                continue  # the early repeats are for a node whose adverts stayed local
            await trio.sleep(delay)
            lonely = await self._advertise_noting_peers()

    async def _advertise_noting_peers(self) -> bool:
        """Advertise in the DHT; True when this node knew no DHT peer to store at.

        Its records then stayed local, unseen by peers that join later, so it
        repeats soon (EARLY_REFRESH_S) instead of waiting a whole period.
        """
        lonely = not self._network.known_peers()
        await self.advertise_once()
        return lonely

    async def _gossip_loop(self) -> None:
        while True:
            await trio.sleep(self._config.load_gossip_s)
            await self.gossip_load()
