"""Inbound request streams: who holds a slot, how long, and how much memory.

Anyone can dial a node and open streams, and each stream may hold an unfinished
message in memory before any of the node's own checks see it. The rules here
keep that cheap for the node and expensive to abuse:

- **Slots, evicting rather than refusing.** At most ``per_peer`` streams per
  transport peer and ``total`` in all. A new stream over a cap takes the slot
  of the stream (of that peer, or of anyone) that has gone longest without
  completing a request: an idle pooled stream or a slow one. Streams whose
  request is being answered are never evicted (the node's admission control
  decides about those); when only such streams hold the slots, the new stream
  is refused.
- **Progress.** A stream between requests may wait ``idle_s`` (the adapter's
  ``NetTimeouts.server_idle``). Once a message
  has begun (even 1 header byte), it must complete, or bring at least
  ``progress_min_bytes`` in every ``progress_window_s``: a stream that sent three
  header bytes and stalls loses its slot after one window, not after ``idle_s``.
- **Memory.** Bytes held for unfinished messages are counted per peer and in
  all (:meth:`Slot.hold`). A peer over ``buffered_per_peer`` is shed; over
  ``buffered_total``, the peer holding the most is shed, until the total fits.
  Freed memory goes back to the OS (:mod:`mesh.net.heap`) once enough was freed.
- **Shedding.** A shed peer loses every unfinished message it was sending,
  and the adapter closes its connection (``on_shed``): resetting
  one stream does not stop the peer's bytes, which the node must still decrypt
  and read; only a closed connection does. Its new streams are refused for
  ``shed_s``, so it cannot come straight back; a new PeerID costs the attacker a
  handshake and again earns it at most its share of the budget. An honest peer
  lands here only by sending more unfinished bytes than the node can hold, and
  its client retries elsewhere.

Sans-IO apart from the eviction callbacks it is given: time is a parameter.
The libp2p adapter (:mod:`mesh.net.libp2p_peer`) opens a :class:`Slot` per
inbound stream and :func:`mesh.net.streams.serve_stream` reports what it does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.core import limits
from mesh.errors import ConfigError, PeerUnavailable

# The heap is trimmed at most this often (a trim walks the whole heap: ms).
TRIM_INTERVAL_S = 1.0
# Expired sheds are forgotten when this many are remembered (each cost its peer
# tens of MiB of traffic, so the table stays small).
SHED_PRUNE_AT = 4096


class StreamIdle(PeerUnavailable):
    """A stream sent no new request for ``idle_s``."""


class StreamStalled(PeerUnavailable):
    """An unfinished message stopped making progress (``progress_min_bytes`` per window)."""


class StreamEvicted(PeerUnavailable):
    """A stream's slot or memory went to another stream."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundLimits:
    """Caps on inbound request streams (see the module docstring).

    Attributes:
        per_peer: streams held open at once by one transport peer.
        total: streams held open at once in all.
        progress_window_s: an unfinished message must bring ``progress_min_bytes``
            within each window this long (or complete).
        progress_min_bytes: see ``progress_window_s``; 32 KiB per 4 s is a 64 kbit/s
            link, slower than any client that sends tasks.
        buffered_per_peer: bytes of unfinished messages one peer may hold; one
            largest message (``MAX_MESSAGE_BYTES``) plus a frame header.
        buffered_total: bytes of unfinished messages all peers together may hold;
            at least one largest message, and small enough that a flood of
            unfinished frames costs the node well under 100 MiB.
        trim_after_bytes: give freed memory back to the OS once this much
            unfinished-message memory was released.
        shed_s: how long a peer that lost a message for memory is refused.
    """

    per_peer: int = 16
    total: int = 256
    progress_window_s: float = 4.0
    progress_min_bytes: int = 32 * limits.KiB
    buffered_per_peer: int = limits.MAX_MESSAGE_BYTES + limits.KiB
    buffered_total: int = 80 * limits.MiB
    trim_after_bytes: int = 16 * limits.MiB
    shed_s: float = 30.0

    def __post_init__(self) -> None:
        if self.per_peer < 1 or self.total < self.per_peer:
            raise ConfigError("need 1 <= per_peer <= total inbound streams")
        if self.progress_window_s <= 0 or self.progress_min_bytes < 1:
            raise ConfigError("progress_window_s and progress_min_bytes must be > 0")
        if not limits.MAX_MESSAGE_BYTES <= self.buffered_per_peer <= self.buffered_total:
            raise ConfigError(
                "need MAX_MESSAGE_BYTES <= buffered_per_peer <= buffered_total "
                "(a peer must be able to send one largest message)"
            )
        if self.shed_s < 0:
            raise ConfigError("shed_s must be >= 0")


class SlotState(enum.Enum):
    WAITING = "waiting"  # between requests (or before the first): idle
    READING = "reading"  # a message has begun and is not complete
    HANDLING = "handling"  # the request is being answered: never evicted


@dataclass(eq=False, slots=True)
class Slot:
    """One inbound stream's place; the stream server reports its state here."""

    peer: str
    addr: str
    opened: float
    cancel: Callable[[], None]
    owner: InboundStreams
    state: SlotState = SlotState.WAITING
    # Since when this stream has gone without completing a request: its open,
    # then the end of its last answer. Eviction takes the oldest.
    since: float = 0.0
    buffered: int = 0
    evicted: str = ""  # why its slot or memory was taken ("" while it holds them)
    peak: int = 0

    def reading(self) -> None:
        """A message began."""
        self.state = SlotState.READING

    def handling(self) -> None:
        """A complete request is being answered."""
        self.state = SlotState.HANDLING
        self.owner._set_buffered(self, 0)

    def waiting(self, now: float) -> None:
        """The answer went out; the stream waits for its next request."""
        self.state = SlotState.WAITING
        self.since = now

    def hold(self, nbytes: int, *, now: float) -> None:
        """Account ``nbytes`` held for this stream's unfinished message.

        Raises:
            StreamEvicted: this stream must give up its message (its peer holds
                the most over a memory cap, and is shed).
        """
        self.owner._hold(self, nbytes, now)


@dataclass(slots=True)
class InboundStats:
    """What the limits did (tests and benchmarks read these)."""

    opened: int = 0
    refused: int = 0
    refused_shed: int = 0  # new streams of a shed peer
    shed: int = 0  # peers shed for memory
    evicted_for_slot: int = 0
    evicted_for_memory: int = 0
    trims: int = 0
    peak_buffered: int = 0


@dataclass(slots=True)
class InboundStreams:
    """The slots of every inbound request stream of one node."""

    limits: InboundLimits = field(default_factory=InboundLimits)
    # Gives freed memory back to the OS; see mesh.net.heap.
    trim: Callable[[], object] = lambda: None
    # Told the PeerID of a shed peer: the adapter closes its connection.
    on_shed: Callable[[str], object] = lambda peer: None
    stats: InboundStats = field(default_factory=InboundStats)
    _slots: dict[str, list[Slot]] = field(default_factory=dict)
    _count: int = 0
    _buffered: dict[str, int] = field(default_factory=dict)
    _buffered_total: int = 0
    _freed: int = 0  # bytes of unfinished messages released since the last trim
    _trimmed: float = float("-inf")
    _shed_until: dict[str, float] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Streams holding a slot now."""
        return self._count

    @property
    def buffered(self) -> int:
        """Bytes of unfinished messages held now, all peers together."""
        return self._buffered_total

    def held_by(self, peer: str) -> int:
        """Streams ``peer`` holds now."""
        return len(self._slots.get(peer, ()))

    def is_shed(self, peer: str, *, now: float) -> bool:
        """True while ``peer`` is refused for having lost a message for memory."""
        until = self._shed_until.get(peer)
        if until is None:
            return False
        if now < until:
            return True
        del self._shed_until[peer]
        return False

    def open(
        self, peer: str, addr: str, *, now: float, cancel: Callable[[], None]
    ) -> tuple[Slot | None, list[Slot]]:
        """A slot for a new stream of ``peer``, evicting another stream if needed.

        Returns:
            The new slot (None: refused, every slot in its way is answering a
            request) and the slots evicted for it (their ``cancel`` was called).
        """
        evicted: list[Slot] = []
        if self.is_shed(peer, now=now):
            self.stats.refused_shed += 1
            return None, evicted
        mine = self._slots.get(peer, [])
        if len(mine) >= self.limits.per_peer:
            victim = _oldest(mine)
            if victim is None:
                self.stats.refused += 1
                return None, evicted
            self._evict(victim, "slot")
            evicted.append(victim)
        if self._count >= self.limits.total:
            victim = _oldest([s for slots in self._slots.values() for s in slots])
            if victim is None:
                self.stats.refused += 1
                return None, evicted
            self._evict(victim, "slot")
            evicted.append(victim)
        slot = Slot(peer=peer, addr=addr, opened=now, cancel=cancel, owner=self, since=now)
        self._slots.setdefault(peer, []).append(slot)
        self._count += 1
        self.stats.opened += 1
        return slot, evicted

    def close(self, slot: Slot, *, now: float) -> None:
        """The stream ended; free its slot and memory (and trim the heap if due)."""
        self._release(slot)
        self.maybe_trim(now=now)

    def maybe_trim(self, *, now: float) -> bool:
        """Give freed memory back to the OS once ``trim_after_bytes`` were freed.

        At most once per ``TRIM_INTERVAL_S``; the adapter also calls this every
        few seconds, so memory freed by the last streams of a flood goes back too.
        """
        if self._freed < self.limits.trim_after_bytes or now - self._trimmed < TRIM_INTERVAL_S:
            return False
        self._freed = 0
        self._trimmed = now
        self.stats.trims += 1
        self.trim()
        return True

    # -- internals ---------------------------------------------------------------

    def _release(self, slot: Slot) -> None:
        slots = self._slots.get(slot.peer)
        if slots is None or slot not in slots:
            return
        self._set_buffered(slot, 0)
        slots.remove(slot)
        if not slots:
            del self._slots[slot.peer]
        self._count -= 1

    def _evict(self, slot: Slot, why: str, *, cancel: bool = True) -> None:
        slot.evicted = why
        if why == "slot":
            self.stats.evicted_for_slot += 1
        else:
            self.stats.evicted_for_memory += 1
        self._release(slot)
        if cancel:
            slot.cancel()

    def _set_buffered(self, slot: Slot, nbytes: int) -> None:
        delta = nbytes - slot.buffered
        if not delta:
            return
        slot.buffered = nbytes
        slot.peak = max(slot.peak, nbytes)
        held = self._buffered.get(slot.peer, 0) + delta
        if held:
            self._buffered[slot.peer] = held
        else:
            self._buffered.pop(slot.peer, None)
        self._buffered_total += delta
        if delta < 0:
            self._freed -= delta
        self.stats.peak_buffered = max(self.stats.peak_buffered, self._buffered_total)

    def _hold(self, slot: Slot, nbytes: int, now: float) -> None:
        if slot.evicted:
            raise StreamEvicted(f"stream lost its {slot.evicted}")
        self._set_buffered(slot, nbytes)
        if self._buffered.get(slot.peer, 0) > self.limits.buffered_per_peer:
            self._shed(slot.peer, slot, now)
        while self._buffered_total > self.limits.buffered_total:
            self._shed(max(self._buffered, key=lambda p: self._buffered[p]), slot, now)

    def _shed(self, peer: str, asking: Slot, now: float) -> None:
        """Take every unfinished message of ``peer`` and refuse it for ``shed_s``.

        Streams answering a request hold no message memory; they end when the
        adapter closes the connection.
        """
        if len(self._shed_until) >= SHED_PRUNE_AT:
            self._shed_until = {p: t for p, t in self._shed_until.items() if t > now}
        self._shed_until[peer] = now + self.limits.shed_s
        self.stats.shed += 1
        for victim in list(self._slots.get(peer, ())):
            if victim.state is not SlotState.HANDLING:
                # The asking stream's own task raises instead of being cancelled.
                self._evict(victim, "memory", cancel=victim is not asking)
        self.on_shed(peer)
        if asking.peer == peer:
            raise StreamEvicted(
                f"unfinished messages over the memory cap ({peer} holds the most): peer shed"
            )


def _oldest(slots: list[Slot]) -> Slot | None:
    """The evictable slot that has gone longest without completing a request."""
    candidates = [s for s in slots if s.state is not SlotState.HANDLING]
    return min(candidates, key=lambda s: s.since, default=None)
