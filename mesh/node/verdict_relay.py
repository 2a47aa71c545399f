"""Nodes relay verdict gossip: they join the verdict topic and drop what they read.

Clients publish verdicts (:mod:`mesh.client.verdicts`) and read other clients'
ones, but a client connects to nodes, never to other clients. Gossipsub only
routes a topic through peers subscribed to it, so every node subscribes to
``VERDICT_TOPIC``: that puts it in the topic's mesh, and the verdicts flow
client -> nodes -> clients. A node takes no action on a verdict: it is the
clients' reputation, not the node's, that verdicts feed.
"""

from __future__ import annotations

import logging

from mesh.errors import MeshError
from mesh.net.interface import VERDICT_TOPIC, Network

logger = logging.getLogger(__name__)


async def relay_verdicts(network: Network) -> None:
    """Stay subscribed to ``VERDICT_TOPIC`` until cancelled, discarding the messages."""
    try:
        channel = await network.subscribe(VERDICT_TOPIC)
    except MeshError as exc:
        # Relaying only helps other peers' gossip; the node serves tasks without it.
        logger.warning("not relaying verdicts: %s", exc)
        return
    async with channel:
        async for _sender, _data in channel:
            pass  # gossipsub forwarded it already; nothing for the node to do
