"""An in-process :class:`~mesh.net.interface.Network` for component tests.

A :class:`MemoryHub` is a little world of peers: each :class:`MemoryNetwork`
joins it with ``async with hub.join(peer_id) as net:``. Requests are framed
and reassembled with :mod:`mesh.core.framing` (so the frame and message caps
of the real transport apply), then handed to the callee's handler in a task of
the *callee's* nursery: a caller that gives up does not cancel the work, as on
a real network, and a node's drain can wait for it.

Everything waits on trio's clock, so ``trio.testing.MockClock(autojump_threshold=0)``
drives deadlines, freezes and retries without real sleeps.

Fault injection, on the hub: :meth:`MemoryHub.kill` (dials fail at once, the
peer's in-flight handlers are cancelled, its stale provider records stay, as
libp2p's 48 h cache keeps them), :meth:`MemoryHub.freeze` (requests to it hang
until the caller's deadline: a SIGSTOPped process), :meth:`MemoryHub.drop`
(requests are accepted and silently lost). Records live per peer and pass
through the validators of the storing peer on put and of the reading peer on
get, like the DHT.

For simulations, a hub takes a latency model: ``latency(caller, callee)`` is the
one-way delay of a request (and of its answer), and ``dht_delay(peer)`` the time
one DHT operation takes for ``peer`` (a Kademlia walk is several round trips;
the hub's DHT is one shared dict, so the walk itself is modelled, not run). The
hub counts request and answer bytes per peer (``bytes_in``, ``bytes_out``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from mesh.core import limits
from mesh.core.capacity import RecordValidator, split_record_key
from mesh.core.framing import FrameReader, encode_frames
from mesh.errors import Closed, ConfigError, DeadlineExceeded, MeshError, PeerUnavailable, TooLarge
from mesh.net.health import HealthList
from mesh.net.interface import Inbound, OnPartial, PeerAddr, RequestHandler, SendPartial

logger = logging.getLogger(__name__)

# Gossipsub in libp2p 0.8.1 silently drops messages of 1 MiB or more; the real
# adapter refuses anything over 64 KiB, and so does this one.
MAX_PUBSUB_BYTES = 64 * limits.KiB
# A subscriber that does not keep up loses messages instead of blocking the
# publisher (gossip is lossy anyway).
_SUBSCRIPTION_BUFFER = 256


_Sub = trio.MemorySendChannel[tuple[str, bytes]]


@dataclass
class _PeerState:
    network: MemoryNetwork
    killed: bool = False
    frozen: bool = False
    dropping: bool = False
    thawed: trio.Event = field(default_factory=trio.Event)


# One-way delay in seconds of a message from the first peer to the second.
Latency = Callable[[str, str], float]
# Seconds one DHT operation (lookup, put, provide) takes for a peer.
DhtDelay = Callable[[str], float]


class MemoryHub:
    """The shared world many :class:`MemoryNetwork` peers join.

    Args:
        latency: one-way delay of each request and answer (none by default).
        dht_delay: duration of each DHT operation (none by default).
    """

    def __init__(
        self, *, latency: Latency | None = None, dht_delay: DhtDelay | None = None
    ) -> None:
        self._latency = latency
        self._dht_delay = dht_delay
        self.bytes_in: Counter[str] = Counter()
        """Request and answer bytes each peer received."""
        self.bytes_out: Counter[str] = Counter()
        """Request and answer bytes each peer sent."""
        self._peers: dict[str, _PeerState] = {}
        self._providers: dict[bytes, dict[str, None]] = {}
        self._subscribers: dict[str, list[tuple[str, _Sub]]] = {}
        self._record_order = itertools.count()
        self.requests_served: Counter[str] = Counter()
        """Requests delivered to each peer's handler (tests assert spread with it)."""
        self.served_by_protocol: Counter[tuple[str, str]] = Counter()
        """Requests delivered, by (peer id, protocol)."""

    @asynccontextmanager
    async def join(
        self, peer_id: str, *, bootstrap: Sequence[str] = ()
    ) -> AsyncIterator[MemoryNetwork]:
        """Add a peer for the duration of the block; it leaves (like a clean exit) after.

        Args:
            peer_id: the new peer's id.
            bootstrap: the peers it joins through (its ``bootstrap_peers()``).
        """
        if peer_id in self._peers:
            raise ConfigError(f"peer {peer_id} already joined")
        async with trio.open_nursery() as nursery:
            net = MemoryNetwork(self, peer_id, nursery, bootstrap=bootstrap)
            self._peers[peer_id] = _PeerState(net)
            try:
                yield net
            finally:
                # Leaving: new requests fail at once; handlers still running are cancelled.
                net._closed = True
                self._peers.pop(peer_id, None)
                for subs in self._subscribers.values():
                    subs[:] = [(p, ch) for p, ch in subs if p != peer_id]
                nursery.cancel_scope.cancel()

    # -- fault injection -------------------------------------------------------------
    def kill(self, peer_id: str) -> None:
        """The peer's process died: dials fail at once, in-flight work is lost."""
        state = self._peers[peer_id]
        state.killed = True
        state.network._nursery.cancel_scope.cancel()

    def freeze(self, peer_id: str) -> None:
        """The peer is SIGSTOPped: requests to it hang until the caller's deadline."""
        state = self._peers[peer_id]
        state.frozen = True
        state.thawed = trio.Event()

    def thaw(self, peer_id: str) -> None:
        """Undo :meth:`freeze` (SIGCONT): hung deliveries proceed."""
        state = self._peers[peer_id]
        state.frozen = False
        state.thawed.set()

    def drop(self, peer_id: str, *, enabled: bool = True) -> None:
        """Requests to the peer are accepted and silently lost."""
        self._peers[peer_id].dropping = enabled

    # -- internals used by MemoryNetwork ---------------------------------------------
    def _state(self, peer_id: str) -> _PeerState:
        state = self._peers.get(peer_id)
        if state is None or state.killed:
            raise PeerUnavailable(f"peer {peer_id} is not reachable")
        return state

    async def _wait_reachable(self, peer_id: str) -> _PeerState:
        state = self._state(peer_id)
        while state.frozen:
            await state.thawed.wait()
            state = self._state(peer_id)
        return state

    async def _travel(self, sender: str, receiver: str, size: int) -> None:
        """One message from ``sender`` to ``receiver``: count it, wait the modelled delay."""
        self.bytes_out[sender] += size
        self.bytes_in[receiver] += size
        if self._latency is not None:
            await trio.sleep(self._latency(sender, receiver))

    async def _dht(self, peer_id: str) -> None:
        if self._dht_delay is not None:
            await trio.sleep(self._dht_delay(peer_id))

    def _running(self, peer_id: str) -> bool:
        state = self._peers.get(peer_id)
        return state is not None and not state.killed

    def _live(self, peer_id: str) -> bool:
        return self._running(peer_id) and not self._peers[peer_id].frozen


class MemoryNetwork:
    """One peer on a :class:`MemoryHub`; implements :class:`~mesh.net.interface.Network`."""

    def __init__(
        self, hub: MemoryHub, peer_id: str, nursery: trio.Nursery, *, bootstrap: Sequence[str] = ()
    ) -> None:
        self._hub = hub
        self._peer_id = peer_id
        self._bootstrap = tuple(PeerAddr(pid, (f"/memory/{pid}",)) for pid in bootstrap)
        self._nursery = nursery
        self._handlers: dict[str, RequestHandler] = {}
        self._validators: dict[str, RecordValidator] = {}
        self._records: dict[str, tuple[int, bytes]] = {}
        self._health = HealthList()
        self._closed = False
        self.requests_sent = 0
        self.dials = 0  # connect() calls (a task to a peer not connected dials first)
        self.sent_by_protocol: Counter[str] = Counter()

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def listen_addrs(self) -> list[str]:
        return [f"/memory/{self._peer_id}/p2p/{self._peer_id}"]

    def set_request_handler(self, protocol: str, handler: RequestHandler) -> None:
        self._handlers[protocol] = handler

    def remove_request_handler(self, protocol: str) -> None:
        """Stop accepting requests on ``protocol`` (new streams are refused)."""
        self._handlers.pop(protocol, None)

    async def request(
        self,
        peer: PeerAddr,
        protocol: str,
        payload: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 (the Network interface takes timeouts)
        on_partial: OnPartial | None = None,
    ) -> bytes:
        self._check_open()
        self.requests_sent += 1
        self.sent_by_protocol[protocol] += 1
        try:
            with trio.move_on_after(timeout) as scope:
                return await self._deliver(peer.peer_id, protocol, payload, on_partial)
        except PeerUnavailable:
            # As the libp2p adapter does: transport failures feed the health list.
            self.mark_unhealthy(peer.peer_id)
            raise
        assert scope.cancelled_caught
        self.mark_unhealthy(peer.peer_id)
        raise DeadlineExceeded(f"request to {peer.peer_id} timed out after {timeout} s")

    async def _deliver(
        self, peer_id: str, protocol: str, payload: bytes, on_partial: OnPartial | None
    ) -> bytes:
        self._hub._state(self._peer_id)  # a killed peer cannot send either
        state = await self._hub._wait_reachable(peer_id)
        callee = state.network
        handler = callee._handlers.get(protocol)
        if handler is None:
            raise PeerUnavailable(f"peer {peer_id} does not speak {protocol}")
        message = _through_frames(payload)
        if message is None:
            raise PeerUnavailable(f"peer {peer_id} closed the stream: message over the caps")
        await self._hub._travel(self._peer_id, peer_id, len(message))
        if state.dropping:
            await trio.sleep_forever()
        send, receive = trio.open_memory_channel[_Answer | MeshError](1)
        # The handler runs in the callee's nursery, so the callee's lifetime (kill,
        # leave) bounds it, not the caller's patience.
        inbound = Inbound(self._peer_id, f"/memory/{self._peer_id}", message, _partials(send))
        # As the libp2p stream server does: a requester that leaves before the
        # answer (deadline, cancelled) has its request cancelled on the callee.
        serving = trio.CancelScope()
        callee._nursery.start_soon(_serve_one, handler, inbound, send, serving)
        self._hub.requests_served[peer_id] += 1
        self._hub.served_by_protocol[peer_id, protocol] += 1
        answered = False
        async with receive:
            try:
                answer = await self._receive_final(peer_id, receive, on_partial)
                answered = True
            finally:
                if not answered:
                    serving.cancel()
        reply = _through_frames(answer.data)
        if reply is None:
            raise PeerUnavailable(f"peer {peer_id} sent a reply over the caps")
        await self._hub._travel(peer_id, self._peer_id, len(reply))
        if self._hub._peers.get(peer_id) is not state or state.killed:
            raise PeerUnavailable(f"peer {peer_id} went away mid-request")
        self._health.record_success(peer_id)
        return reply

    @staticmethod
    async def _receive_final(
        peer_id: str,
        receive: trio.MemoryReceiveChannel[_Answer | MeshError],
        on_partial: OnPartial | None,
    ) -> _Answer:
        while True:
            try:
                answer = await receive.receive()
            except trio.EndOfChannel:
                raise PeerUnavailable(f"peer {peer_id} went away mid-request") from None
            if isinstance(answer, MeshError):
                raise answer
            if not answer.partial:
                return answer
            if on_partial is None:
                raise PeerUnavailable(f"{peer_id} sent a partial answer nobody asked for")
            await on_partial(answer.data)

    async def connect(self, peer: PeerAddr, *, timeout: float) -> None:  # noqa: ASYNC109 (the Network interface takes timeouts)
        self._check_open()
        self.dials += 1
        try:
            with trio.move_on_after(timeout):
                await self._hub._wait_reachable(peer.peer_id)
                return
        except PeerUnavailable:
            # As the libp2p adapter does: a failed dial feeds the health list.
            self.mark_unhealthy(peer.peer_id)
            raise
        self.mark_unhealthy(peer.peer_id)
        raise DeadlineExceeded(f"connect to {peer.peer_id} timed out after {timeout} s")

    async def provide(self, key: bytes, *, timeout: float) -> None:  # noqa: ASYNC109 (the Network interface takes timeouts)
        self._check_open()
        self._hub._state(self._peer_id)
        self._hub._providers.setdefault(bytes(key), {})[self._peer_id] = None
        await self._hub._dht(self._peer_id)
        await trio.lowlevel.checkpoint()

    async def find_providers(self, key: bytes, *, count: int, timeout: float) -> list[PeerAddr]:  # noqa: ASYNC109 (the Network interface takes timeouts)
        self._check_open()
        await self._hub._dht(self._peer_id)
        await trio.lowlevel.checkpoint()
        # Like libp2p, stale records of dead or frozen peers are returned; only
        # peers this network has seen fail are left out.
        found = [
            PeerAddr(pid, (f"/memory/{pid}",))
            for pid in self._hub._providers.get(bytes(key), {})
            if not self._is_unhealthy(pid)
        ]
        return found[:count]

    async def put_record(self, key: str, value: bytes, *, timeout: float) -> None:  # noqa: ASYNC109 (the Network interface takes timeouts)
        self._check_open()
        self._hub._state(self._peer_id)
        # The storing peer's own validator runs first and its error propagates,
        # as KadDHT.put_value does; every other peer validates what it stores.
        self._validate(key, value)
        for state in list(self._hub._peers.values()):
            if state.killed:
                continue
            try:
                state.network._store(key, value)
            except MeshError as exc:
                logger.debug("peer %s refused record %s: %s", state.network.peer_id, key, exc)
        await trio.lowlevel.checkpoint()

    async def get_record(self, key: str, *, timeout: float) -> bytes | None:  # noqa: ASYNC109 (the Network interface takes timeouts)
        self._check_open()
        self._validator_for(key)  # like the libp2p adapter: no validator, no lookup
        await self._hub._dht(self._peer_id)
        await trio.lowlevel.checkpoint()
        candidates: list[tuple[int, bytes]] = []
        for state in self._hub._peers.values():
            if state.killed or state.frozen:
                continue
            held = state.network._records.get(key)
            if held is not None:
                candidates.append(held)
        for _, value in sorted(candidates, reverse=True):
            try:
                self._validate(key, value)
            except MeshError as exc:
                logger.debug("dropping invalid record %s: %s", key, exc)
                continue
            return value
        return None

    def set_record_validator(self, namespace: str, validator: RecordValidator) -> None:
        self._validators[namespace] = validator

    def inject_record(self, key: str, value: bytes) -> None:
        """Store ``value`` here without validation (a malicious or buggy peer's store)."""
        self._records[key] = (self._hub_clock(), value)

    async def publish(self, topic: str, data: bytes, *, timeout: float) -> None:  # noqa: ASYNC109 (the Network interface takes timeouts)
        self._check_open()
        if len(data) > MAX_PUBSUB_BYTES:
            raise TooLarge(f"pubsub message of {len(data)} bytes exceeds {MAX_PUBSUB_BYTES}")
        self._hub._state(self._peer_id)
        for peer_id, channel in list(self._hub._subscribers.get(topic, [])):
            if peer_id == self._peer_id or not self._hub._live(peer_id):
                continue
            try:
                channel.send_nowait((self._peer_id, bytes(data)))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                continue
        await trio.lowlevel.checkpoint()

    async def subscribe(self, topic: str) -> trio.abc.ReceiveChannel[tuple[str, bytes]]:
        self._check_open()
        send, receive = trio.open_memory_channel[tuple[str, bytes]](_SUBSCRIPTION_BUFFER)
        self._hub._subscribers.setdefault(topic, []).append((self._peer_id, send))
        await trio.lowlevel.checkpoint()
        return receive

    def bootstrap_peers(self) -> Sequence[PeerAddr]:
        return self._bootstrap

    def connected_peers(self) -> list[str]:
        """Every other peer of the hub whose process runs: as over TCP, a frozen
        (SIGSTOPped) peer stays connected and a killed one does not."""
        return [pid for pid in self._hub._peers if pid != self._peer_id and self._hub._running(pid)]

    async def probe_listener(self, addr: str, peer_id: str, *, timeout: float) -> None:  # noqa: ASYNC109 (the Network interface takes timeouts)
        """Answers when ``peer_id`` is live on the hub and ``addr`` is one of its addresses."""
        self._check_open()
        with trio.move_on_after(timeout):
            state = await self._hub._wait_reachable(peer_id)
            if addr not in [a.split("/p2p/")[0] for a in state.network.listen_addrs()]:
                raise PeerUnavailable(f"{peer_id} does not listen at {addr}")
            return
        raise DeadlineExceeded(f"probe of {addr} timed out after {timeout} s")

    def known_peers(self) -> Sequence[PeerAddr]:
        return [
            PeerAddr(pid, (f"/memory/{pid}",))
            for pid, state in self._hub._peers.items()
            if pid != self._peer_id and not state.killed and not self._is_unhealthy(pid)
        ]

    def mark_unhealthy(self, peer_id: str) -> None:
        self._health.record_failure(peer_id, now=trio.current_time())

    def is_healthy(self, peer_id: str) -> bool:
        return not self._health.is_dead(peer_id, now=trio.current_time())

    def consecutive_failures(self, peer_id: str) -> int:
        return self._health.failures(peer_id)

    # -- internals -------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise Closed(f"memory network of {self._peer_id} is closed")

    def _is_unhealthy(self, peer_id: str) -> bool:
        return self._health.is_dead(peer_id, now=trio.current_time())

    def _validator_for(self, key: str) -> RecordValidator:
        namespace, _ = split_record_key(key)
        if namespace not in self._validators:
            raise ConfigError(f"no record validator for key {key!r}")
        return self._validators[namespace]

    def _validate(self, key: str, value: bytes) -> None:
        self._validator_for(key)(key, value)

    def _store(self, key: str, value: bytes) -> None:
        self._validate(key, value)
        self._records[key] = (self._hub_clock(), value)

    def _hub_clock(self) -> int:
        # A hub-wide insertion order, so get_record prefers the newest value.
        return next(self._hub._record_order)


def _through_frames(payload: bytes) -> bytes | None:
    """Pass a message through the real framing; None when a cap closes the stream."""
    reader = FrameReader()
    try:
        messages = reader.feed(encode_frames(payload))
    except MeshError:
        return None
    return messages[0].data if len(messages) == 1 else None


@dataclass(frozen=True, slots=True)
class _Answer:
    data: bytes
    partial: bool


_AnswerSend = trio.MemorySendChannel[_Answer | MeshError]


def _partials(send: _AnswerSend) -> SendPartial:
    async def send_partial(data: bytes) -> None:
        reply = _through_frames(data)
        if reply is None:
            raise TooLarge("partial answer over the caps")
        try:
            await send.send(_Answer(reply, partial=True))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # As a write to a stream whose reader left: the requester went away.
            raise PeerUnavailable("the requester went away mid-answer") from exc

    return send_partial


async def _serve_one(
    handler: RequestHandler, inbound: Inbound, send: _AnswerSend, scope: trio.CancelScope
) -> None:
    async with send:
        try:
            with scope:
                answer = await handler(inbound)
            if scope.cancelled_caught:
                logger.debug("requester %s went away: request dropped", inbound.peer_id)
                return
        except MeshError as exc:
            # The handler refused the message outright (garbage), or the requester
            # left: the stream is reset, which the caller sees as an unavailable peer.
            logger.debug("handler closed the stream from %s: %s", inbound.peer_id, exc)
            await _send_quietly(send, PeerUnavailable(f"stream closed by peer: {exc}"))
            return
        await _send_quietly(send, _Answer(answer, partial=False))


async def _send_quietly(send: _AnswerSend, item: _Answer | MeshError) -> None:
    # The caller may have given up (deadline): then the answer has nowhere to go.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await send.send(item)
