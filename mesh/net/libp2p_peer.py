"""A running libp2p peer as a :class:`~mesh.net.interface.Network`.

Every dial, stream, DHT and pubsub call runs under a deadline (notes, bug 6:
frozen peers make py-libp2p 0.8.1 calls hang 10-30 s), and failures feed our
own :class:`~mesh.net.health.HealthList`, because the library keeps dead peers
in its tables forever. Started and stopped by
:func:`mesh.net.libp2p_net.open_libp2p_network`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError
from libp2p.pubsub.pubsub import Pubsub

from mesh.core import limits
from mesh.core.capacity import RECORD_SELECTORS, RecordValidator, split_record_key
from mesh.errors import (
    Closed,
    ConfigError,
    DeadlineExceeded,
    Expired,
    NetworkError,
    PeerUnavailable,
    ProtocolError,
    TooLarge,
)
from mesh.net import dht as dht_glue
from mesh.net.addresses import parse_peer_id, strip_p2p
from mesh.net.deadlines import library_deadline, library_errors
from mesh.net.guard import install_guard
from mesh.net.health import HealthList
from mesh.net.heap import trim_heap
from mesh.net.inbound import InboundLimits, InboundStats, InboundStreams
from mesh.net.interface import Network, OnPartial, PeerAddr, RequestHandler
from mesh.net.multiaddrs import parse_multiaddr
from mesh.net.probe import probe_listener
from mesh.net.pubsub import TopicFanout
from mesh.net.streams import (
    STREAM_ERRORS,
    MessageReader,
    StreamPool,
    StreamStats,
    close_quietly,
    discard,
    refusals,
    remote_addr,
    serve_stream,
    write_message,
)

logger = logging.getLogger(__name__)

# Gossipsub drops messages of 1 MiB or more without a word (notes, bug 5); load
# updates are a few hundred bytes, so 64 KiB leaves room and fails loudly.
MAX_PUBSUB_BYTES = 64 * limits.KiB
# Addresses learnt from a dial or a provider record are kept this long (s).
ADDR_TTL_S = 3600
# Closing all connections at shutdown gets this long before services stop anyway.
CLOSE_S = 2.0
# Inbound stream limits (mesh.net.inbound); the idle deadline is NetTimeouts.server_idle.
DEFAULT_INBOUND = InboundLimits()
# How often peers whose backoff ran out go back into the routing table.
TABLE_CHECK_S = 5.0
# The library asks this many providers; duplicates count against it (bug 4).
PROVIDER_OVERFETCH = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class NetTimeouts:
    """Deadlines (seconds) for the library calls that can hang on a frozen peer."""

    dial: float = 3.0
    # Also bounds the library's own stream opens (DHT, pubsub): see mesh.net.guard.
    stream_open: float = 2.0
    request: float = 5.0
    dht: float = 5.0
    pubsub: float = 2.0
    # An inbound stream with no new request for this long is dropped, so a dead or
    # silent client cannot pin a stream forever; longer than the pool's POOL_IDLE_S.
    server_idle: float = 60.0


class Libp2pNetwork:
    """A running libp2p peer; create it with :func:`open_libp2p_network`."""

    def __init__(
        self,
        *,
        host: IHost,
        dht: KadDHT,
        pubsub: Pubsub,
        nursery: trio.Nursery,
        timeouts: NetTimeouts,
        inbound: InboundLimits = DEFAULT_INBOUND,
    ) -> None:
        self._host = host
        self._dht = dht
        self._pubsub = pubsub
        self._nursery = nursery
        self._timeouts = timeouts
        self._peer_id = host.get_id().to_base58()
        self._health = HealthList()
        self._pool = StreamPool()
        self._fanout = TopicFanout(pubsub=pubsub, nursery=nursery, own_peer_id=self._peer_id)
        self._validators: dict[str, dht_glue.MeshRecordValidator] = {}
        self._handlers: dict[str, RequestHandler] = {}
        # Slots, progress and memory of inbound request streams (mesh.net.inbound).
        self._inbound = InboundStreams(inbound, trim=trim_heap, on_shed=self._shed)
        # Connections being closed after a stall or a shed; set when done (tests await it).
        self._evicting: dict[str, trio.Event] = {}
        # Peers taken out of the routing table while unhealthy, and the
        # bootstrap peers: both are put back by restore_peers().
        self._benched: set[str] = set()
        self._bootstrap: tuple[PeerAddr, ...] = ()
        self.stats = StreamStats()
        self._closed = False
        self._unguarded = install_guard(
            host,
            is_dead=lambda pid: self._health.is_dead(pid, now=trio.current_time()),
            on_stall=self._note_stall,
            open_timeout=timeouts.stream_open,
        )

    # -- identity ----------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        """This peer's base58 PeerID (the key that signs its receipts)."""
        return self._peer_id

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs including ``/p2p/<peer id>``."""
        return [f"{a}/p2p/{self._peer_id}" for a in self._host.get_transport_addrs()]

    # -- requests ----------------------------------------------------------------

    def set_request_handler(self, protocol: str, handler: RequestHandler) -> None:
        """Answer each message on inbound ``protocol`` streams with ``handler``."""
        self._handlers[protocol] = handler

        async def on_stream(stream: INetStream) -> None:
            peer = str(stream.muxed_conn.peer_id)
            scope = trio.CancelScope()
            slot, evicted = self._inbound.open(
                peer, remote_addr(stream), now=trio.current_time(), cancel=scope.cancel
            )
            for old in evicted:
                refusals.info(
                    "stream-evicted",
                    "stream from %s evicted (%s) for a new stream from %s",
                    old.peer,
                    old.state.value,
                    peer,
                )
            if slot is None:
                self.stats.rejected_streams += 1
                if self._inbound.is_shed(peer, now=trio.current_time()):
                    refusals.info("stream-refused", "reset a stream of %s: shed for memory", peer)
                    self._evict(peer)  # it came back on a new connection
                else:
                    # Every slot in the way is answering a request: admission's business.
                    refusals.info(
                        "stream-refused", "too many streams answering; reset one of %s", peer
                    )
                await discard(stream)
                return
            try:
                with scope:
                    await serve_stream(
                        stream,
                        self._handlers[protocol],
                        slot=slot,
                        limits=self._inbound.limits,
                        idle_s=self._timeouts.server_idle,
                        write_s=self._timeouts.request,
                        stats=self.stats,
                    )
                if scope.cancelled_caught:
                    await discard(stream)  # evicted: its slot or memory went to others
            finally:
                self._inbound.close(slot, now=trio.current_time())

        self._host.set_stream_handler(TProtocol(protocol), on_stream)

    # The Network interface takes explicit timeouts (ASYNC109): services pass
    # per-call deadlines, and the adapter must honour them inside the library.
    async def request(
        self,
        peer: PeerAddr,
        protocol: str,
        payload: bytes,
        *,
        timeout: float,  # noqa: ASYNC109
        on_partial: OnPartial | None = None,
    ) -> bytes:
        """Send one message and return the final answer, on a pooled stream when one is idle.

        Partial answers before the final one go to ``on_partial``.

        Raises:
            TooLarge: ``payload`` over the message cap.
            PeerUnavailable: dial or stream failed, or the answer is broken (a partial
                answer nobody asked for, garbage frames): the peer is marked unhealthy.
            DeadlineExceeded: no answer within ``timeout`` (the peer is marked unhealthy).
        """
        self._check_open()
        if len(payload) > limits.MAX_MESSAGE_BYTES:
            raise TooLarge(f"request of {len(payload)} bytes over {limits.MAX_MESSAGE_BYTES}")
        try:
            with trio.fail_after(timeout):
                response = await self._request_once(peer, protocol, payload, on_partial)
        except trio.TooSlowError as exc:
            self.mark_unhealthy(peer.peer_id)
            raise DeadlineExceeded(f"no answer from {peer.peer_id} in {timeout} s") from exc
        except NetworkError:
            self.mark_unhealthy(peer.peer_id)
            raise
        self._health.record_success(peer.peer_id)
        return response

    async def _request_once(
        self, peer: PeerAddr, protocol: str, payload: bytes, on_partial: OnPartial | None
    ) -> bytes:
        now = trio.current_time()
        for old in self._pool.stale(now=now):
            await close_quietly(old)
        stream = self._pool.take(peer.peer_id, protocol, now=now)
        partials = _PartialCounter(on_partial)
        if stream is not None:
            self.stats.reused += 1
            try:
                return await self._exchange(peer, protocol, stream, payload, partials)
            except PeerUnavailable as exc:
                if partials.delivered:
                    raise  # a retry would deliver those partials twice
                # A pooled stream may have been dropped by the server while idle:
                # that says nothing about the peer, so try once on a fresh stream.
                logger.debug(
                    "pooled stream to %s failed (%s), opening a new one", peer.peer_id, exc
                )
        stream = await self._open_stream(peer, protocol)
        return await self._exchange(peer, protocol, stream, payload, partials)

    async def _exchange(
        self,
        peer: PeerAddr,
        protocol: str,
        stream: INetStream,
        payload: bytes,
        partials: _PartialCounter,
    ) -> bytes:
        done = False
        try:
            await write_message(stream, payload)
            reader = MessageReader(stream)
            while True:
                try:
                    message = await reader.next()
                except ProtocolError as exc:  # garbage or oversized frames from the peer
                    raise PeerUnavailable(f"bad answer from {peer.peer_id}: {exc}") from exc
                if message is None:
                    raise PeerUnavailable(f"{peer.peer_id} closed the stream without answering")
                if not message.partial:
                    break
                await partials.deliver(peer.peer_id, message.data)
            if not reader.idle:
                raise PeerUnavailable(f"{peer.peer_id} sent more after its final answer")
            done = True
            return message.data
        finally:
            if done:
                if not self._pool.give_back(
                    peer.peer_id, protocol, stream, now=trio.current_time()
                ):
                    await close_quietly(stream)
            else:
                # Cancelled, failed or garbled: the stream's state is unknown.
                self.stats.failed += 1
                await discard(stream)

    async def _open_stream(self, peer: PeerAddr, protocol: str) -> INetStream:
        peer_id = parse_peer_id(peer.peer_id)
        self._remember_addrs(peer_id, peer.addrs)
        try:
            with trio.fail_after(self._timeouts.stream_open):
                stream = await self._unguarded.new_stream(peer_id, [TProtocol(protocol)])
        except trio.TooSlowError as exc:
            self._evict(peer.peer_id)
            raise DeadlineExceeded(f"opening a stream to {peer.peer_id} timed out") from exc
        except STREAM_ERRORS as exc:
            raise PeerUnavailable(f"cannot open a stream to {peer.peer_id}: {exc!r}") from exc
        self.stats.opened += 1
        return stream

    # -- connections ------------------------------------------------------------

    async def connect(self, peer: PeerAddr, *, timeout: float) -> None:  # noqa: ASYNC109
        """Dial ``peer`` (if not connected) and add it to the DHT routing table.

        Raises:
            PeerUnavailable: the dial failed. DeadlineExceeded: it took too long.
        """
        self._check_open()
        peer_id = parse_peer_id(peer.peer_id)
        info = PeerInfo(peer_id, [parse_multiaddr(a) for a in peer.addrs])
        try:
            with trio.fail_after(min(timeout, self._timeouts.dial)):
                await self._host.connect(info)
        except trio.TooSlowError as exc:
            self.mark_unhealthy(peer.peer_id)
            raise DeadlineExceeded(f"dialling {peer.peer_id} timed out") from exc
        except STREAM_ERRORS as exc:
            self.mark_unhealthy(peer.peer_id)
            raise PeerUnavailable(f"cannot dial {peer.peer_id}: {exc!r}") from exc
        self._remember_addrs(peer_id, peer.addrs)
        self._health.record_success(peer.peer_id)
        # bug 9: a dial never reaches the routing table by itself. Best effort: the
        # dial succeeded, and the table is refilled by restore_peers() anyway.
        try:
            with trio.move_on_after(self._timeouts.dht), library_errors("routing-table add"):
                await self._dht.add_peer(peer_id, skip_server_mode_check=True)
        except NetworkError as exc:
            logger.debug("could not add %s to the routing table: %s", peer.peer_id, exc)

    def _remember_addrs(self, peer_id: ID, addrs: Sequence[str]) -> None:
        if addrs:
            self._host.get_peerstore().add_addrs(
                peer_id, [parse_multiaddr(a) for a in addrs], ADDR_TTL_S
            )

    # -- DHT: providers ----------------------------------------------------------

    async def provide(self, key: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        """Announce that this peer serves ``key`` (a raw model_root).

        Raises:
            DeadlineExceeded: the announcement did not finish in time.
        """
        self._check_open()
        with self._dht_deadline(timeout, "provide"):
            # The raw key goes straight to the provider store: KadDHT.provide(str)
            # would first try to read a string as a CID or hex.
            reached = await self._dht.provider_store.provide(bytes(key))
        if not reached:
            logger.info("provided %s locally only: no DHT peer took the record", key.hex()[:16])

    async def find_providers(self, key: bytes, *, count: int, timeout: float) -> list[PeerAddr]:  # noqa: ASYNC109
        """Peers announcing ``key``: deduplicated, without ourselves and known-dead peers.

        Asks the network each time (the library would answer from a 48 h cache),
        merged with the records this peer holds.
        """
        self._check_open()
        raw = bytes(key)
        found: list[PeerInfo] = list(dht_glue.local_providers(self._dht, raw))
        try:
            with self._dht_deadline(timeout, "find_providers"), dht_glue.network_lookup():
                found += await self._dht.provider_store.find_providers(
                    raw, max(count * PROVIDER_OVERFETCH, 20)
                )
        except DeadlineExceeded:
            if not found:
                raise
            logger.debug("find_providers hit its deadline; answering from local records")
        return self._to_peer_addrs(found, count)

    def _to_peer_addrs(self, infos: Sequence[PeerInfo], count: int) -> list[PeerAddr]:
        now = trio.current_time()
        seen: set[str] = set()
        result: list[PeerAddr] = []
        for info in infos:
            pid = info.peer_id.to_base58()
            if pid in seen or pid == self._peer_id or self._health.is_dead(pid, now=now):
                continue
            seen.add(pid)
            addrs = list(info.addrs) or self._known_addrs(info.peer_id)
            result.append(PeerAddr(pid, tuple(dict.fromkeys(strip_p2p(a) for a in addrs))))
            if len(result) >= count:
                break
        return result

    # -- DHT: records ------------------------------------------------------------

    def set_record_validator(
        self,
        namespace: str,
        validator: RecordValidator,
        selector: dht_glue.RecordSelector | None = None,
    ) -> None:
        """Validate every record under ``/<namespace>/`` on put, get and inbound store.

        Args:
            namespace: for example ``CAPACITY_NAMESPACE``.
            validator: raises MeshError for a record that must not be kept.
            selector: picks the best of several valid values (default: the
                namespace's in ``RECORD_SELECTORS``, e.g. the newest capacity record;
                else the first).
        """
        selector = selector or RECORD_SELECTORS.get(namespace)
        wrapped = dht_glue.MeshRecordValidator(validator, selector)
        self._validators[namespace] = wrapped
        self._dht.register_validator(namespace, wrapped)

    async def put_record(self, key: str, value: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        """Store ``value`` under ``key`` (``/<namespace>/...``) here and at the closest peers.

        Raises:
            MeshError: the namespace's validator rejects the value (nothing stored).
            Expired: the selector prefers the record already held here.
            ConfigError: no validator for the key's namespace.
            DeadlineExceeded: the store did not finish in time.
        """
        self._check_open()
        self._validator_for(key).check(key, value)
        try:
            with self._dht_deadline(timeout, "put_record"):
                await self._dht.put_value(key, value)
        except ValueError as exc:
            # KadDHT.put_value refuses when the selector prefers the value it holds.
            raise Expired(f"a newer record is already stored under {key}") from exc

    async def get_record(self, key: str, *, timeout: float) -> bytes | None:  # noqa: ASYNC109
        """The best valid value under ``key`` (asking the network), or None.

        The library would answer from its local store alone, unvalidated; we ask
        the network every time, then let the validator's selector choose between
        that answer and the copy held here. When the network is too slow, a valid
        local copy is the answer.
        """
        self._check_open()
        validator = self._validator_for(key)
        key_bytes = key.encode("utf-8")
        held = dht_glue.local_value(self._dht, key_bytes)
        fetched: bytes | None = None
        try:
            with self._dht_deadline(timeout, "get_record"), dht_glue.network_lookup():
                fetched = await self._dht.get_value(key)
        except DeadlineExceeded:
            if held is None or not validator.is_valid(key, held):
                raise
            logger.debug("get_record hit its deadline; answering from the local copy")
        candidates = [v for v in (fetched, held) if v is not None and validator.is_valid(key, v)]
        if not candidates:
            if held is not None:
                self._dht.value_store.remove(key_bytes)  # expired or forged: forget it
            return None
        best = candidates[validator.select(key, candidates)]
        if best != fetched and fetched is not None:
            # get_value stored the network's answer over our better copy: put it back.
            self._dht.value_store.put(key_bytes, best)
        return best

    def _validator_for(self, key: str) -> dht_glue.MeshRecordValidator:
        namespace, _ = split_record_key(key)
        if namespace not in self._validators:
            raise ConfigError(f"no record validator for key {key!r}")
        return self._validators[namespace]

    # -- pubsub ------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes, *, timeout: float) -> None:  # noqa: ASYNC109
        """Send ``data`` to the subscribers of ``topic``.

        Raises:
            TooLarge: over 64 KiB (gossipsub silently drops big messages).
            DeadlineExceeded: publishing took too long.
            NetworkError: the library failed to publish. Closed: the peer is closed.
        """
        if len(data) > MAX_PUBSUB_BYTES:
            raise TooLarge(f"pubsub message of {len(data)} bytes over {MAX_PUBSUB_BYTES}")
        self._check_open()
        with library_deadline(min(timeout, self._timeouts.pubsub), f"publish on {topic}"):
            await self._pubsub.publish(topic, data)

    async def subscribe(self, topic: str) -> trio.abc.ReceiveChannel[tuple[str, bytes]]:
        """Messages on ``topic`` from other peers, as (sender peer id, data).

        Raises:
            DeadlineExceeded: announcing the subscription to peers took too long.
            NetworkError: the library failed to subscribe. Closed: the peer is closed.
        """
        self._check_open()
        with library_deadline(self._timeouts.pubsub, f"subscribing to {topic}"):
            return await self._fanout.subscribe(topic)

    # -- connections ---------------------------------------------------------------

    def connected_peers(self) -> list[str]:
        """PeerIDs with an open connection now."""
        return [pid.to_base58() for pid in self._host.get_connected_peers()]

    async def probe_listener(self, addr: str, peer_id: str, *, timeout: float) -> None:  # noqa: ASYNC109
        """A fresh TCP connection to ``addr`` and a Noise handshake with ``peer_id``
        (:func:`mesh.net.probe.probe_listener`); no connection is kept."""
        self._check_open()
        await probe_listener(addr, peer_id, timeout=timeout)

    # -- health ------------------------------------------------------------------

    def bootstrap_peers(self) -> Sequence[PeerAddr]:
        """The peers this one joined through (its bootstrap list), dead or alive."""
        return self._bootstrap

    def known_peers(self) -> Sequence[PeerAddr]:
        """Peers in the routing table that the health list does not mark dead."""
        infos = self._dht.routing_table.get_peer_infos()
        return self._to_peer_addrs(infos, len(infos))

    def mark_unhealthy(self, peer_id: str) -> None:
        """Count a failure of ``peer_id``; it is avoided for a growing backoff."""
        until = self._health.record_failure(peer_id, now=trio.current_time())
        logger.info("peer %s marked unhealthy for %.1f s", peer_id, until - trio.current_time())
        for stream in self._pool.drop_peer(peer_id):
            self._nursery.start_soon(discard, stream)
        try:
            # The library never evicts frozen peers (bug 6); we do, so DHT
            # queries stop waiting on them. restore_peers() puts it back later.
            self._dht.routing_table.remove_peer(ID.from_base58(peer_id))
        except (ValueError, KeyError) as exc:
            logger.debug("could not remove %s from the routing table: %r", peer_id, exc)
        self._benched.add(peer_id)

    async def restore_peers(self) -> list[str]:
        """Put peers back in the routing table once their backoff ran out.

        Both we (mark_unhealthy) and the library (a failed stream open) drop
        peers from the routing table and nothing adds them back, so a peer that
        froze for a moment, or a client's only bootstrap peer, would be lost for
        good. Bootstrap peers come back whenever the table is empty.

        Returns:
            The peer ids put back.
        """
        now = trio.current_time()
        wanted = set(self._benched)
        if self._dht.routing_table.size() == 0:
            wanted.update(p.peer_id for p in self._bootstrap)
        restored: list[str] = []
        for peer_id in sorted(wanted):
            if self._health.is_dead(peer_id, now=now):
                continue
            self._benched.discard(peer_id)
            pid = ID.from_base58(peer_id)
            addrs = self._known_addrs(pid)
            if not addrs:
                continue
            try:
                with trio.move_on_after(self._timeouts.dht), library_errors("routing-table add"):
                    if await self._dht.routing_table.add_peer(
                        PeerInfo(pid, addrs), skip_server_mode_check=True
                    ):
                        restored.append(peer_id)
            except NetworkError as exc:
                logger.debug("could not put %s back in the routing table: %s", peer_id, exc)
        if restored:
            logger.debug("routing table: put back %s", restored)
        return restored

    def _known_addrs(self, pid: ID) -> list[multiaddr.Multiaddr]:
        """The peerstore's addresses of a peer, else its bootstrap addresses, else none.

        py-libp2p 0.8.1's ``peerstore.addrs`` raises ``PeerStoreError`` for a peer it
        has forgotten (rather than answering empty); uncaught here, that took down
        whole testnet nodes under load (found by the discovery benchmark).
        """
        try:
            addrs: list[multiaddr.Multiaddr] = self._host.get_peerstore().addrs(pid)
        except PeerStoreError:
            addrs = []
        if addrs:
            return addrs
        wanted = pid.to_base58()
        return [parse_multiaddr(a) for p in self._bootstrap if p.peer_id == wanted for a in p.addrs]

    async def _maintain(self) -> None:
        """Every TABLE_CHECK_S, put recovered peers back in the routing table.

        And give memory freed by dropped unfinished messages back to the OS
        (when the last stream of a flood closed less than a second after a trim).
        """
        while True:
            await trio.sleep(TABLE_CHECK_S)
            self._inbound.maybe_trim(now=trio.current_time())
            await self.restore_peers()

    @property
    def inbound_stats(self) -> InboundStats:
        """What the inbound stream limits did (evictions, refusals, memory peak, trims)."""
        return self._inbound.stats

    @property
    def inbound_buffered(self) -> int:
        """Bytes of unfinished inbound messages held now."""
        return self._inbound.buffered

    def _note_stall(self, peer_id: str) -> None:
        """A stream open stalled: the peer (or the link) is frozen, not merely slow."""
        # Several library tasks may stall on one frozen peer at once: count it once.
        if not self._health.is_dead(peer_id, now=trio.current_time()):
            self.mark_unhealthy(peer_id)
        self._evict(peer_id)

    def _shed(self, peer_id: str) -> None:
        """A peer sent more unfinished bytes than the node holds: stop reading them."""
        refusals.info(
            "peer-shed",
            "closed the connection of %s: it held the most unfinished bytes over the budget",
            peer_id,
        )
        self._evict(peer_id)

    def _evict(self, peer_id: str) -> None:
        """Close the connection to a frozen or shed peer, in the background.

        Library tasks (gossipsub writes, DHT reads) blocked on it then fail at
        once instead of waiting 10-30 s; the next dial makes a new connection.
        Only stalls and sheds (mesh.net.inbound) lead here, never a slow answer:
        closing the connection also kills other requests in flight to that peer.
        """
        if peer_id in self._evicting:
            return
        done = trio.Event()
        self._evicting[peer_id] = done

        async def close() -> None:
            try:
                with trio.move_on_after(CLOSE_S):
                    await self._disconnect(ID.from_base58(peer_id))
            finally:
                del self._evicting[peer_id]
                done.set()

        self._nursery.start_soon(close)

    def is_healthy(self, peer_id: str) -> bool:
        """False while ``peer_id`` is in its backoff window."""
        return not self._health.is_dead(peer_id, now=trio.current_time())

    def consecutive_failures(self, peer_id: str) -> int:
        """Failures of ``peer_id`` since it last answered (0 when healthy)."""
        return self._health.failures(peer_id)

    # -- internals ---------------------------------------------------------------

    def _dht_deadline(self, timeout: float, what: str) -> AbstractContextManager[None]:
        return library_deadline(min(timeout, self._timeouts.dht), what)

    def _check_open(self) -> None:
        if self._closed:
            raise Closed(f"the network of peer {self._peer_id} is closed")

    async def _aclose(self) -> None:
        """Close streams and connections before the services stop.

        Connections go first: otherwise a message arriving after pubsub stopped
        makes the library spawn into a closed nursery ("Nursery is closed to new
        arrivals") and the traceback escapes through the host.
        """
        self._closed = True
        await self._fanout.aclose()
        for stream in self._pool.drain():
            await close_quietly(stream)
        for protocol in self._handlers:
            self._host.remove_stream_handler(TProtocol(protocol))
        # Concurrently: Yamux's close alone sleeps 0.1 s per connection.
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_S):
            async with trio.open_nursery() as nursery:
                for peer_id in list(self._host.get_connected_peers()):
                    nursery.start_soon(self._disconnect, peer_id)

    async def _disconnect(self, peer_id: ID) -> None:
        try:
            await self._host.disconnect(peer_id)
        except STREAM_ERRORS as exc:
            logger.debug("disconnecting %s at shutdown: %r", peer_id, exc)


class _PartialCounter:
    """Hands partial answers to the requester's callback and counts them."""

    def __init__(self, on_partial: OnPartial | None) -> None:
        self._on_partial = on_partial
        self.delivered = 0

    async def deliver(self, peer_id: str, data: bytes) -> None:
        if self._on_partial is None:
            raise PeerUnavailable(f"{peer_id} sent a partial answer nobody asked for")
        self.delivered += 1
        await self._on_partial(data)


if TYPE_CHECKING:  # mypy checks that the class implements the Network protocol

    def _implements_network(net: Libp2pNetwork) -> Network:
        return net
