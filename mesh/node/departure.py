"""Departure: a draining node tells the mesh it is leaving, so clients drop it at once.

When a node starts draining (SIGTERM, Ctrl-C, the end of ``async with Node``) it
signs a capacity record with ``draining = True`` -- the same signed message kind
as every advert, so every peer already knows how to check it -- and sends it two
ways at once, each under :data:`DEPARTURE_TIMEOUT_S`:

- gossip on ``LOAD_TOPIC``: live clients take it within a gossip hop (tens of ms
  measured on loopback) and drop the node from their view and from selection;
- the DHT, under the node's ``/mesh-cap/<peer id>`` key: a client that looks the
  node up afterwards (``mesh peers``) finds the draining record, not the last
  normal one.

Why a flag on the capacity record rather than a message of its own: the record
is what clients cache per peer and replace by the newest (``created_ms``), so a
later draining record supersedes the node's last advert wherever it lands, with
no new validator, DHT namespace or message kind. It lives as long as a normal
record (``capacity_ttl_ms``): long enough to outlive every advert the node made
before it (each expires at most that long after it was made), no longer.

A node that dies without draining (SIGKILL, power loss) sends nothing; its last
record then expires by itself, which is why capacity records live only
``capacity_ttl_periods`` refresh periods (see :class:`mesh.node.config.NodeConfig`).
"""

from __future__ import annotations

import logging

import trio

from mesh.core.capacity import capacity_key
from mesh.errors import MeshError
from mesh.net.interface import LOAD_TOPIC, Network
from mesh.node.advertiser import Advertiser

logger = logging.getLogger(__name__)

# The whole announcement: a gossip publish and a DHT put, at once. Short: a drain
# must not wait on a dead mesh, and tasks in flight are finishing meanwhile.
DEPARTURE_TIMEOUT_S = 3.0


async def announce_departure(advertiser: Advertiser, network: Network) -> dict[str, bool]:
    """Gossip and store this node's draining record; which of the two went out.

    The advertiser must already build draining records (the node's admission is
    closed). Failures are logged, never raised: leaving goes on regardless.
    """
    signed = advertiser.build_record()
    if not signed.message.draining:
        raise RuntimeError("announce_departure before the node started draining")
    sent = {"gossip": False, "dht": False}

    async def gossip() -> None:
        try:
            await network.publish(LOAD_TOPIC, signed.envelope, timeout=DEPARTURE_TIMEOUT_S)
        except MeshError as exc:
            logger.info("departure not gossiped: %s", exc)
            return
        sent["gossip"] = True

    async def store() -> None:
        try:
            await network.put_record(
                capacity_key(network.peer_id), signed.envelope, timeout=DEPARTURE_TIMEOUT_S
            )
        except MeshError as exc:
            logger.info("departure record not stored: %s", exc)
            return
        sent["dht"] = True

    with trio.move_on_after(DEPARTURE_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gossip)
            nursery.start_soon(store)
    logger.info(
        "departure announced (gossip %s, DHT %s)",
        "sent" if sent["gossip"] else "not sent",
        "stored" if sent["dht"] else "not stored",
    )
    return sent
