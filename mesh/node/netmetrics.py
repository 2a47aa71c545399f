"""A :class:`~mesh.net.interface.Network` that counts what the node does with it.

:class:`MeteredNetwork` wraps the node's network and feeds
:class:`~mesh.node.metrics.NodeMetrics`: each DHT operation (``put_record``,
``get_record``, ``provide``, ``find_providers``) and gossip operation
(``publish``, ``subscribe``) by outcome (``ok``, ``timeout``, ``error``), each
outbound request by protocol and outcome, and the message bytes of requests and
answers on every protocol, both ways (inbound ones through the handlers it
wraps). What it cannot see: the DHT traffic the library serves for other peers
(their lookups and stores pass through libp2p, not through us), and framing
overhead below whole messages.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
from prometheus_client import Counter

from mesh.errors import DeadlineExceeded, MeshError
from mesh.net.forwarding import ForwardingNetwork
from mesh.net.interface import Inbound, Network, OnPartial, PeerAddr, RequestHandler
from mesh.node.metrics import NodeMetrics

T = TypeVar("T")


class MeteredNetwork(ForwardingNetwork):
    """Delegates everything to ``inner`` and counts it in ``metrics``."""

    def __init__(self, inner: Network, metrics: NodeMetrics) -> None:
        super().__init__(inner)
        self._metrics = metrics

    def set_request_handler(self, protocol: str, handler: RequestHandler) -> None:
        counter = self._metrics.request_bytes

        async def counted(inbound: Inbound) -> bytes:
            counter.labels(protocol, "in").inc(len(inbound.message))
            reply = await handler(inbound)
            counter.labels(protocol, "out").inc(len(reply))
            return reply

        self._inner.set_request_handler(protocol, counted)

    async def request(
        self,
        peer: PeerAddr,
        protocol: str,
        payload: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 (the Network interface takes timeouts)
        on_partial: OnPartial | None = None,
    ) -> bytes:
        counter = self._metrics.request_bytes
        counter.labels(protocol, "out").inc(len(payload))

        async def partial(data: bytes) -> None:
            counter.labels(protocol, "in").inc(len(data))
            assert on_partial is not None
            await on_partial(data)

        answer = await _counted(
            self._metrics.requests,
            protocol,
            functools.partial(
                self._inner.request,
                peer,
                protocol,
                payload,
                timeout=timeout,
                on_partial=None if on_partial is None else partial,
            ),
        )
        counter.labels(protocol, "in").inc(len(answer))
        return answer

    async def provide(self, key: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        call = functools.partial(self._inner.provide, key, timeout=timeout)
        await _counted(self._metrics.dht_ops, "provide", call)

    async def find_providers(self, key: bytes, *, count: int, timeout: float) -> list[PeerAddr]:  # noqa: ASYNC109
        call = functools.partial(self._inner.find_providers, key, count=count, timeout=timeout)
        return await _counted(self._metrics.dht_ops, "find_providers", call)

    async def put_record(self, key: str, value: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        call = functools.partial(self._inner.put_record, key, value, timeout=timeout)
        await _counted(self._metrics.dht_ops, "put_record", call)

    async def get_record(self, key: str, *, timeout: float) -> bytes | None:  # noqa: ASYNC109
        call = functools.partial(self._inner.get_record, key, timeout=timeout)
        return await _counted(self._metrics.dht_ops, "get_record", call)

    async def publish(self, topic: str, data: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        call = functools.partial(self._inner.publish, topic, data, timeout=timeout)
        await _counted(self._metrics.gossip_ops, "publish", call)

    async def subscribe(self, topic: str) -> trio.abc.ReceiveChannel[tuple[str, bytes]]:
        call = functools.partial(self._inner.subscribe, topic)
        return await _counted(self._metrics.gossip_ops, "subscribe", call)


async def _counted(counter: Counter, op: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call``, counting it under ``op``: ok, timeout (DeadlineExceeded) or error."""
    try:
        result = await call()
    except DeadlineExceeded:
        counter.labels(op, "timeout").inc()
        raise
    except MeshError:
        counter.labels(op, "error").inc()
        raise
    counter.labels(op, "ok").inc()
    return result
