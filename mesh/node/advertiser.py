"""The node's adverts: provider records, a signed capacity record, load gossip.

- Provider records under each served model_root say "who serves X"; they are
  re-announced every refresh period because libp2p's own 48 h records say
  nothing about liveness.
- A :class:`~mesh.core.messages.CapacityRecord`, signed by the node, is put under
  ``/mesh-cap/<peer id>`` every refresh period and expires a few periods later;
  :func:`mesh.core.capacity.capacity_validator` is what every peer runs on put and get.
- Load changes are gossiped on ``LOAD_TOPIC`` as the same signed record (about
  400 bytes, far under the 64 KiB pubsub cap), so clients verify gossip exactly
  like DHT records and no new message kind is needed.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import trio

from mesh.aio.clock import WallClock
from mesh.core.capacity import capacity_key
from mesh.core.envelope import Signed, sign_message
from mesh.core.identity import Identity
from mesh.core.messages import CapacityRecord
from mesh.errors import MeshError
from mesh.net.interface import LOAD_TOPIC, Network
from mesh.node.config import NodeConfig
from mesh.node.runner import TaskRunner

logger = logging.getLogger(__name__)

# Delays of the first re-announcements after start (seconds), then every period.
EARLY_REFRESH_S = (2.0, 5.0, 15.0)


class Advertiser:
    """Keeps this node's provider records, capacity record and load gossip fresh."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        network: Network,
        runner: TaskRunner,
        wall_clock: WallClock,
        throughput_milli: Callable[[], int],
        queue_depth: Callable[[], int],
        queue_capacity: Callable[[], int],
        memory_free_mb: Callable[[], int] = lambda: 0,
        addrs: Callable[[], list[str]] | None = None,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self._config = config
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
        return sign_message(self._identity, record)

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
        """Refresh adverts every period and gossip load changes, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._refresh_loop)
            nursery.start_soon(self._gossip_loop)

    async def _refresh_loop(self) -> None:
        # The node advertised once before starting this loop, possibly before it
        # knew any DHT peer (then its records stayed local). Re-announce soon a
        # few times so a node joining a mesh is findable in seconds, not a period.
        period = self._config.capacity_refresh_s
        early = (d for d in EARLY_REFRESH_S if d < period)
        for delay in itertools.chain(early, itertools.repeat(period)):
            await trio.sleep(delay)
            await self.advertise_once()

    async def _gossip_loop(self) -> None:
        while True:
            await trio.sleep(self._config.load_gossip_s)
            await self.gossip_load()
