"""Framed messages over libp2p streams: read loops, a per-peer pool, a server loop.

py-libp2p 0.8.1 gives up on single reads past ~6.5 MB (notes, bug 3), so we
never ask the library for a whole message: we read whatever the stream has and
feed :class:`mesh.core.framing.FrameReader` until a message is complete
(:class:`MessageReader`).

A stream carries one request at a time; the client keeps idle streams in a
small pool per (peer, protocol) and reuses them (a new stream costs ~4 ms, a
reused one ~1 ms). The server answers each inbound stream in a loop, one
message after another, until the peer closes it or goes quiet too long.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import trio
from libp2p.abc import INetStream
from libp2p.exceptions import BaseLibp2pError

from mesh.aio.groups import unwrap_single_error
from mesh.aio.ratelog import RateLimitedLog
from mesh.core.framing import FrameReader, Message, encode_frames
from mesh.errors import MalformedMessage, PeerUnavailable, ProtocolError
from mesh.net.inbound import InboundLimits, Slot, StreamEvicted, StreamIdle, StreamStalled
from mesh.net.interface import Inbound, RequestHandler

logger = logging.getLogger(__name__)
# One line per refused stream or message, rate-limited per reason (a flood of
# garbage must not fill the operator's disk); no tracebacks for bad input.
refusals = RateLimitedLog(logger)

# What one read asks for; Yamux hands out at most 64 KiB windows anyway.
READ_CHUNK_BYTES = 256 * 1024
# Idle streams kept per (peer, protocol): enough for a few concurrent requests.
MAX_IDLE_STREAMS_PER_KEY = 4
# How long an idle pooled stream is trusted; shorter than the server's idle
# deadline (NetTimeouts.server_idle) so we do not reuse one the server dropped.
POOL_IDLE_S = 30.0
# Cleanup of a stream (reset/close) gets this long before we give up on it.
CLEANUP_S = 1.0

# Everything a libp2p stream call may raise when the peer or connection fails.
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    BaseLibp2pError,
    OSError,
    trio.BrokenResourceError,
)


class MessageReader:
    """Reads framed messages from one stream, in order.

    An answer may hold several messages (partials, then the final one) and one
    read may carry several of them: the ones not yet asked for wait here.

    On the serving side a :class:`~mesh.net.inbound.Slot` and its limits make
    every read wait under a deadline: ``idle_s`` between requests, one progress
    window while a message is unfinished (see :mod:`mesh.net.inbound`); the bytes
    held are reported to the slot, which may take them away (StreamEvicted).
    """

    def __init__(
        self,
        stream: INetStream,
        *,
        slot: Slot | None = None,
        limits: InboundLimits | None = None,
        idle_s: float = 60.0,
    ) -> None:
        self._stream = stream
        self._frames = FrameReader()
        self._ready: deque[Message] = deque()
        self._slot = slot
        self._limits = limits or InboundLimits()
        self._idle_s = idle_s
        self._window_start = 0.0  # the current progress window of an unfinished message
        self._window_bytes = 0

    @property
    def idle(self) -> bool:
        """True when nothing received is waiting or half-read."""
        return not self._ready and self._frames.idle

    async def next(self) -> Message | None:
        """The next message, or None when the peer closed the stream cleanly between messages.

        Raises:
            TooLarge / MalformedMessage: from the frame reader.
            PeerUnavailable: the stream broke, or closed in the middle of a message.
            StreamIdle / StreamStalled / StreamEvicted: (serving side) no request in
                ``idle_s``, an unfinished message without progress, or its memory
                taken for others.
        """
        while not self._ready:
            data = await self._read()
            if not data:
                if self._frames.idle:
                    return None
                raise PeerUnavailable("stream closed in the middle of a message")
            if self._slot is not None and self._frames.idle:
                self._slot.reading()
                self._window_start, self._window_bytes = trio.current_time(), 0
            self._window_bytes += len(data)
            self._ready.extend(self._frames.feed(data))
            if self._slot is not None:
                self._slot.hold(self._frames.buffered, now=trio.current_time())
        return self._ready.popleft()

    async def _read(self) -> bytes:
        if self._slot is None:
            return await self._read_chunk()
        limits = self._limits
        while True:
            if self._frames.idle:
                deadline = self._slot.since + self._idle_s
            else:
                deadline = self._window_start + limits.progress_window_s
            with trio.move_on_at(deadline):
                return await self._read_chunk()
            if self._frames.idle:
                raise StreamIdle(f"no request for {self._idle_s:.0f} s")
            if self._window_bytes < limits.progress_min_bytes:
                raise StreamStalled(
                    f"unfinished message: {self._window_bytes} bytes in "
                    f"{limits.progress_window_s:.0f} s (at least {limits.progress_min_bytes})"
                )
            self._window_start, self._window_bytes = deadline, 0

    async def _read_chunk(self) -> bytes:
        try:
            return await self._stream.read(READ_CHUNK_BYTES)
        except EOFError:
            return b""
        except STREAM_ERRORS as exc:
            raise PeerUnavailable(f"stream read failed: {exc!r}") from exc

    async def wait_gone(self) -> str:
        """Return once the peer closed or reset the stream, or sent more (a breach).

        For the serving side while a request is answered: the requester sends
        nothing until it has the answer, so any event here means it went away
        (or broke the one-request-at-a-time rule). Returns what happened.
        """
        try:
            data = await self._stream.read(READ_CHUNK_BYTES)
        except EOFError:
            return "closed"
        except STREAM_ERRORS:
            return "reset"
        return "sent more before the answer" if data else "closed"


async def write_message(stream: INetStream, message: bytes, *, partial: bool = False) -> None:
    """Write one framed message (``partial``: a partial answer, more follow).

    Raises:
        PeerUnavailable: the stream broke.
    """
    try:
        await stream.write(encode_frames(message, partial=partial))
    except STREAM_ERRORS as exc:
        raise PeerUnavailable(f"stream write failed: {exc!r}") from exc


async def discard(stream: INetStream) -> None:
    """Reset a stream we give up on; never raises, never hangs, survives cancellation."""
    with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_S):
        try:
            await stream.reset()
        except STREAM_ERRORS as exc:
            logger.debug("reset of a stream failed: %r", exc)


async def close_quietly(stream: INetStream) -> None:
    """Close a stream at the end of a conversation; never raises, never hangs."""
    with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_S):
        try:
            await stream.close()
        except STREAM_ERRORS as exc:
            logger.debug("close of a stream failed: %r", exc)


@dataclass(slots=True)
class StreamStats:
    """Counters the tests and benchmarks read (streams opened vs reused)."""

    opened: int = 0
    reused: int = 0
    failed: int = 0
    served_messages: int = 0
    rejected_streams: int = 0
    abandoned: int = 0  # requests whose requester went away before the answer


@dataclass(slots=True)
class _Idle:
    stream: INetStream
    since: float


@dataclass(slots=True)
class StreamPool:
    """Idle request streams per (peer id, protocol); one request per stream at a time."""

    max_idle: int = MAX_IDLE_STREAMS_PER_KEY
    idle_s: float = POOL_IDLE_S
    _idle: dict[tuple[str, str], deque[_Idle]] = field(default_factory=dict)

    def take(self, peer_id: str, protocol: str, *, now: float) -> INetStream | None:
        """An idle stream to reuse, or None (call :meth:`stale` first to close old ones)."""
        queue = self._idle.get((peer_id, protocol))
        while queue:
            entry = queue.pop()  # the freshest first: least likely to be dropped
            if now - entry.since <= self.idle_s:
                return entry.stream
        return None

    def stale(self, *, now: float) -> list[INetStream]:
        """Remove and return streams idle longer than ``idle_s``."""
        old: list[INetStream] = []
        for key, queue in list(self._idle.items()):
            keep = deque(e for e in queue if now - e.since <= self.idle_s)
            old.extend(e.stream for e in queue if now - e.since > self.idle_s)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return old

    def give_back(self, peer_id: str, protocol: str, stream: INetStream, *, now: float) -> bool:
        """Keep ``stream`` for reuse; False when the pool is full (close it)."""
        queue = self._idle.setdefault((peer_id, protocol), deque())
        if len(queue) >= self.max_idle:
            return False
        queue.append(_Idle(stream, now))
        return True

    def drop_peer(self, peer_id: str) -> list[INetStream]:
        """Remove and return every idle stream to ``peer_id``."""
        gone: list[INetStream] = []
        for key in [k for k in self._idle if k[0] == peer_id]:
            gone.extend(e.stream for e in self._idle.pop(key))
        return gone

    def drain(self) -> list[INetStream]:
        """Remove and return every idle stream (at shutdown)."""
        gone = [e.stream for q in self._idle.values() for e in q]
        self._idle.clear()
        return gone


def remote_addr(stream: INetStream) -> str:
    """The remote transport address of ``stream`` as a multiaddr string, ``""`` if unknown.

    py-libp2p 0.8.1 answers None for every IPv6 connection (it expects a 2-tuple
    from ``getpeername``; IPv6 gives 4), which would make every IPv6 peer its own
    address source: the socket under the connection is asked directly then.
    """
    try:
        remote = stream.get_remote_address() or _socket_peer(stream)
    except AttributeError:  # a stream type without addresses
        return ""
    except STREAM_ERRORS:
        return ""
    if remote is None:
        return ""
    host, port = remote
    return f"/{'ip6' if ':' in host else 'ip4'}/{host}/tcp/{port}"


# The attributes leading from a muxed connection down to its socket in py-libp2p
# 0.8.1: Yamux.secured_conn -> SecureSession.conn -> NoiseTransportReadWriter.conn
# -> RawConnection.stream -> TrioTCPStream.stream -> SocketStream.socket.
_DOWN = ("secured_conn", "conn", "stream", "socket")
_MAX_HOPS = 8


def _socket_peer(stream: INetStream) -> tuple[str, int] | None:
    layer: object = stream.muxed_conn
    for _ in range(_MAX_HOPS):
        peer = getattr(layer, "getpeername", None)
        if callable(peer):
            address = peer()
            if isinstance(address, tuple) and len(address) >= 2:
                return str(address[0]), int(address[1])
            return None
        layer = next((getattr(layer, a) for a in _DOWN if hasattr(layer, a)), None)
        if layer is None:
            return None
    return None


async def serve_stream(
    stream: INetStream,
    handler: RequestHandler,
    *,
    slot: Slot,
    limits: InboundLimits,
    idle_s: float,
    write_s: float,
    stats: StreamStats,
) -> None:
    """Answer requests on one inbound stream until the peer closes it.

    A garbage or oversized frame, a broken, idle, stalled or evicted stream, or
    a handler exception ends the conversation by resetting the stream; nothing
    propagates into the library's task (which would take the connection down
    with it). Requests end with a final message; a partial message from the
    requester is a protocol breach. While a request is answered the stream is
    watched: a requester that resets or closes it (it gave up) has its request
    cancelled, so queued or running work for nobody is dropped.
    """
    peer = slot.peer
    reader = MessageReader(stream, slot=slot, limits=limits, idle_s=idle_s)

    async def send_partial(data: bytes) -> None:
        with trio.fail_after(write_s):
            await write_message(stream, data, partial=True)

    try:
        while True:
            message = await reader.next()
            if message is None:
                await close_quietly(stream)
                return
            if message.partial or not reader.idle:
                # One request at a time per stream, and a request is one final message.
                raise MalformedMessage("a request must be one final message at a time")
            slot.handling()
            try:
                response = await _answer_unless_gone(
                    reader, handler, Inbound(peer, slot.addr, message.data, send_partial)
                )
            except (trio.Cancelled, PeerUnavailable, trio.TooSlowError, ProtocolError):
                raise  # cancelled, the requester went away mid-answer, or garbage: below
            except Exception as exc:
                # The handler is service code: whatever it raises, this stream
                # ends without an answer and every other stream keeps going.
                # A bug, not bad input: keep the traceback (rate-limited).
                refusals.warning(
                    "handler-failed", "request handler failed for %s, resetting: %r", peer, exc
                )
                logger.debug("request handler failure", exc_info=True)
                stats.rejected_streams += 1
                await discard(stream)
                return
            if response is None:
                stats.abandoned += 1
                await discard(stream)
                return
            with trio.fail_after(write_s):
                await write_message(stream, response)
            slot.waiting(trio.current_time())
            stats.served_messages += 1
    except ProtocolError as exc:
        refusals.info("bad-frames", "bad frames from %s (%s %s), resetting", peer, exc.code, exc)
        stats.rejected_streams += 1
        await discard(stream)
    except (StreamStalled, StreamEvicted) as exc:
        refusals.info("slow-stream", "stream from %s dropped: %s", peer, exc)
        stats.rejected_streams += 1
        await discard(stream)
    except StreamIdle as exc:
        logger.debug("stream from %s idle (%s), dropping it", peer, exc)
        await discard(stream)
    except (PeerUnavailable, trio.TooSlowError) as exc:
        logger.debug("stream from %s ended: %r", peer, exc)
        await discard(stream)


async def _answer_unless_gone(
    reader: MessageReader, handler: RequestHandler, inbound: Inbound
) -> bytes | None:
    """The handler's answer, or None when the requester went away first.

    The handler is cancelled then: its task's queued or running work is dropped.
    """
    response: bytes | None = None
    gone = ""

    async def watch(scope: trio.CancelScope) -> None:
        nonlocal gone
        gone = await reader.wait_gone()
        scope.cancel()

    with unwrap_single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            response = await handler(inbound)
            nursery.cancel_scope.cancel()
    if gone:
        logger.debug("requester %s went away (%s): request dropped", inbound.peer_id, gone)
        return None
    return response
