"""A :class:`~mesh.net.interface.Network` that hands every call to another one.

Wrappers that change a part of a network -- count its traffic (the node's
metrics), delay its requests (the WAN emulation's ``--wan=app``) -- subclass
:class:`ForwardingNetwork` and override only that part, so the interface is
forwarded in one place and a method added to it later reaches every wrapper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from mesh.core.capacity import RecordValidator
from mesh.net.interface import Network, OnPartial, PeerAddr, RequestHandler


class ForwardingNetwork:
    """Forwards everything to ``inner``."""

    def __init__(self, inner: Network) -> None:
        self._inner = inner

    @property
    def inner(self) -> Network:
        """The wrapped network."""
        return self._inner

    @property
    def peer_id(self) -> str:
        return self._inner.peer_id

    def listen_addrs(self) -> list[str]:
        return self._inner.listen_addrs()

    def set_request_handler(self, protocol: str, handler: RequestHandler) -> None:
        self._inner.set_request_handler(protocol, handler)

    async def request(
        self,
        peer: PeerAddr,
        protocol: str,
        payload: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 (the Network interface takes timeouts)
        on_partial: OnPartial | None = None,
    ) -> bytes:
        return await self._inner.request(
            peer, protocol, payload, timeout=timeout, on_partial=on_partial
        )

    async def connect(self, peer: PeerAddr, *, timeout: float) -> None:  # noqa: ASYNC109
        await self._inner.connect(peer, timeout=timeout)

    async def provide(self, key: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        await self._inner.provide(key, timeout=timeout)

    async def find_providers(self, key: bytes, *, count: int, timeout: float) -> list[PeerAddr]:  # noqa: ASYNC109
        return await self._inner.find_providers(key, count=count, timeout=timeout)

    async def put_record(self, key: str, value: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        await self._inner.put_record(key, value, timeout=timeout)

    async def get_record(self, key: str, *, timeout: float) -> bytes | None:  # noqa: ASYNC109
        return await self._inner.get_record(key, timeout=timeout)

    def set_record_validator(self, namespace: str, validator: RecordValidator) -> None:
        self._inner.set_record_validator(namespace, validator)

    async def publish(self, topic: str, data: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        await self._inner.publish(topic, data, timeout=timeout)

    async def subscribe(self, topic: str) -> trio.abc.ReceiveChannel[tuple[str, bytes]]:
        return await self._inner.subscribe(topic)

    def connected_peers(self) -> list[str]:
        return self._inner.connected_peers()

    async def probe_listener(self, addr: str, peer_id: str, *, timeout: float) -> None:  # noqa: ASYNC109
        await self._inner.probe_listener(addr, peer_id, timeout=timeout)

    def bootstrap_peers(self) -> Sequence[PeerAddr]:
        return self._inner.bootstrap_peers()

    def known_peers(self) -> Sequence[PeerAddr]:
        return self._inner.known_peers()

    def mark_unhealthy(self, peer_id: str) -> None:
        self._inner.mark_unhealthy(peer_id)

    def is_healthy(self, peer_id: str) -> bool:
        return self._inner.is_healthy(peer_id)

    def consecutive_failures(self, peer_id: str) -> int:
        return self._inner.consecutive_failures(peer_id)


if TYPE_CHECKING:  # mypy checks that the class implements the Network protocol

    def _implements_network(net: ForwardingNetwork) -> Network:
        return net
