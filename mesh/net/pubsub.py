"""Gossipsub subscriptions fanned out to any number of trio channels.

py-libp2p 0.8.1 keeps one subscription per topic (a second ``subscribe`` returns
the same queue), so two readers would steal each other's messages. One
forwarding task per topic copies each message to every channel handed out.
Load updates are lossy by nature: a reader that falls behind loses messages
rather than stalling the forwarder (and with it everyone else).
"""

from __future__ import annotations

import logging

import libp2p.pubsub.pubsub as libp2p_pubsub
import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub

logger = logging.getLogger(__name__)

# Messages buffered per reader before new ones are dropped for that reader.
CHANNEL_BUFFER = 256
# py-libp2p 0.8.1 queues 32 messages per subscription and drops the rest (a
# burst of relayed load updates lost ~60% in our test); its delivery tasks can
# all run before our forwarder is scheduled, so the queue must hold a burst.
LIBRARY_QUEUE = 1024


class TopicFanout:
    """Hands out receive channels of (sender peer id, data) per topic."""

    def __init__(self, *, pubsub: Pubsub, nursery: trio.Nursery, own_peer_id: str) -> None:
        self._pubsub = pubsub
        self._nursery = nursery
        self._own = own_peer_id
        self._senders: dict[str, list[trio.MemorySendChannel[tuple[str, bytes]]]] = {}

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[tuple[str, bytes]]:
        """A new channel receiving every later message on ``topic`` from other peers."""
        send, receive = trio.open_memory_channel[tuple[str, bytes]](CHANNEL_BUFFER)
        if topic not in self._senders:
            self._senders[topic] = [send]
            # Read by Pubsub.subscribe when it creates the queue; our peer is the
            # only Pubsub user in the process.
            libp2p_pubsub.SUBSCRIPTION_CHANNEL_SIZE = max(
                libp2p_pubsub.SUBSCRIPTION_CHANNEL_SIZE, LIBRARY_QUEUE
            )
            subscription = await self._pubsub.subscribe(topic)
            self._nursery.start_soon(self._forward, topic, subscription)
        else:
            self._senders[topic].append(send)
        return receive

    async def _forward(self, topic: str, subscription: object) -> None:
        get = subscription.get  # type: ignore[attr-defined]  # libp2p ISubscriptionAPI
        while True:
            try:
                message = await get()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                break
            try:
                sender = ID(message.from_id).to_base58()
            except (ValueError, TypeError):
                continue
            if sender == self._own:
                continue  # our own publish echoed back: readers want other peers
            self._deliver(topic, sender, bytes(message.data))
        for send in self._senders.pop(topic, []):
            send.close()

    def _deliver(self, topic: str, sender: str, data: bytes) -> None:
        alive: list[trio.MemorySendChannel[tuple[str, bytes]]] = []
        for send in self._senders.get(topic, []):
            try:
                send.send_nowait((sender, data))
            except trio.WouldBlock:
                logger.debug("a reader of %s is behind; dropped one message", topic)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue  # that reader went away
            alive.append(send)
        self._senders[topic] = alive

    async def aclose(self) -> None:
        """Close every channel handed out (readers see EndOfChannel)."""
        for senders in self._senders.values():
            for send in senders:
                send.close()
        self._senders.clear()
