"""The network seam: what node and client services need from a network.

Two implementations: ``mesh.net.libp2p_net`` (the only code that imports
libp2p) and ``mesh.net.memory`` (in-process, for component tests on a fake
clock). Services depend on this interface only.

Every method that talks to other peers takes a ``timeout`` in seconds (hence
the ``noqa: ASYNC109``: the deadline is part of the contract, not left to callers) and raises
:class:`mesh.errors.DeadlineExceeded` when it runs out, or
:class:`mesh.errors.PeerUnavailable` when the peer cannot be reached; nothing
here waits without a deadline.

Payloads are whole messages (bytes): framing and chunking happen inside the
implementation with :mod:`mesh.core.framing`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio

from mesh.core.capacity import RecordValidator

TASK_PROTOCOL = "/mesh/task/1.0.0"
LOAD_TOPIC = "/mesh/load/1"
# Signed verdicts (mesh.core.messages.Verdict envelopes) clients publish about workers.
VERDICT_TOPIC = "/mesh/verdicts/1"


@dataclass(frozen=True, slots=True)
class PeerAddr:
    """A peer and the multiaddrs it can be dialled on (without /p2p/)."""

    peer_id: str
    addrs: tuple[str, ...] = field(default=())


# Sends one partial answer (for example a chunk of generated tokens) before the final one.
SendPartial = Callable[[bytes], Awaitable[None]]
# Receives a partial answer on the requesting side.
OnPartial = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One request as a handler sees it.

    Attributes:
        peer_id: the transport peer that sent it (authenticated by the Noise handshake).
        addr: its remote transport address (``/ip4/203.0.113.7/tcp/40123``), ``""`` when
            the transport does not say.
        message: the request message.
        send_partial: writes a partial answer to the requester before the final one;
            only for requesters that asked for partials (the protocol says how).
    """

    peer_id: str
    addr: str
    message: bytes
    send_partial: SendPartial


# A request handler answers one inbound request with the final response message.
# Raising closes the stream without an answer (garbage).
RequestHandler = Callable[[Inbound], Awaitable[bytes]]


class Network(Protocol):
    """What a node or client needs from the network."""

    @property
    def peer_id(self) -> str: ...

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs including ``/p2p/<peer id>``."""
        ...

    def set_request_handler(self, protocol: str, handler: RequestHandler) -> None: ...

    async def request(
        self,
        peer: PeerAddr,
        protocol: str,
        payload: bytes,
        *,
        timeout: float,  # noqa: ASYNC109
        on_partial: OnPartial | None = None,
    ) -> bytes:
        """Send one request message and return the final response message.

        Partial answers arriving before the final one go to ``on_partial`` (an
        answer holding a partial when ``on_partial`` is None is a broken answer:
        PeerUnavailable). ``timeout`` bounds the whole exchange. Reuses a warm
        stream to the peer when one is idle (a new stream costs ~4 ms in libp2p
        0.8.1, a reused one ~1 ms).
        """
        ...

    async def connect(self, peer: PeerAddr, *, timeout: float) -> None: ...  # noqa: ASYNC109

    async def provide(self, key: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        """Announce that this peer serves ``key`` (a model_root)."""
        ...

    async def find_providers(self, key: bytes, *, count: int, timeout: float) -> list[PeerAddr]:  # noqa: ASYNC109
        """Peers announcing ``key``, deduplicated, without known-dead peers."""
        ...

    async def put_record(self, key: str, value: bytes, *, timeout: float) -> None: ...  # noqa: ASYNC109

    async def get_record(self, key: str, *, timeout: float) -> bytes | None: ...  # noqa: ASYNC109

    def set_record_validator(self, namespace: str, validator: RecordValidator) -> None: ...

    async def publish(self, topic: str, data: bytes, *, timeout: float) -> None: ...  # noqa: ASYNC109

    async def subscribe(self, topic: str) -> trio.abc.ReceiveChannel[tuple[str, bytes]]:
        """Messages on ``topic`` as (sender peer id, data)."""
        ...

    def connected_peers(self) -> list[str]:
        """PeerIDs this peer holds an open connection to now."""
        ...

    async def probe_listener(self, addr: str, peer_id: str, *, timeout: float) -> None:  # noqa: ASYNC109
        """Check, on a fresh connection, that ``peer_id`` answers at ``addr``.

        Never reuses an open connection (that would say nothing about ``addr``).
        The dial-back check (``mesh.node.dialback``) runs it for a peer that asks.

        Raises:
            ConfigError: ``addr`` is not an address this network can dial.
            PeerUnavailable: nothing answers there, or not as ``peer_id``.
            DeadlineExceeded: no answer within ``timeout``.
        """
        ...

    def known_peers(self) -> Sequence[PeerAddr]:
        """Peers in the routing table that the health list does not mark dead.

        Both implementations keep one :class:`mesh.net.health.HealthList`: a peer
        that fails is avoided for a backoff that doubles with each consecutive
        failure; an answer resets it.
        """
        ...

    def mark_unhealthy(self, peer_id: str) -> None:
        """Tell the health list a peer failed (dial, timeout, a failed answer)."""
        ...

    def is_healthy(self, peer_id: str) -> bool:
        """False while ``peer_id`` is inside its backoff after a failure."""
        ...

    def consecutive_failures(self, peer_id: str) -> int:
        """Failures of ``peer_id`` since it last answered (0 when healthy)."""
        ...
