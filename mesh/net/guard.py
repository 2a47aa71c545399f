"""Keep the library's own traffic (DHT, pubsub) away from peers we know are dead.

py-libp2p 0.8.1 never evicts frozen peers (notes, bug 6), and other peers keep
naming them as "closer peers" in DHT answers, so every lookup would wait on them
again (10 s each). Every library query opens its stream with
``host.new_stream``; wrapping that one method on our host instance:
- refuses at once a stream to a peer the health list marks dead (the library
  treats it as that peer failing and moves on to the next);
- puts a deadline on opening the stream, and reports a peer that misses it, so
  a frozen peer is noticed by DHT traffic too, not only by our requests.

The adapter's own requests and dials use the unwrapped methods: an explicit
request still tries a peer in backoff (the caller chose it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID

NewStream = Callable[[ID, Sequence[TProtocol]], Awaitable[INetStream]]


@dataclass(frozen=True, slots=True)
class UnguardedHost:
    """The host's original stream opener, for the adapter's own calls."""

    new_stream: NewStream


def install_guard(
    host: IHost,
    *,
    is_dead: Callable[[str], bool],
    on_stall: Callable[[str], None],
    open_timeout: float,
) -> UnguardedHost:
    """Wrap ``host.new_stream`` for the library's callers; return the original."""
    original: NewStream = host.new_stream

    async def guarded(peer_id: ID, protocol_ids: Sequence[TProtocol]) -> INetStream:
        pid = peer_id.to_base58()
        if is_dead(pid):
            raise StreamFailure(f"{pid} is in backoff after recent failures")
        with trio.move_on_after(open_timeout):
            return await original(peer_id, protocol_ids)
        on_stall(pid)
        raise StreamFailure(f"opening a stream to {pid} took over {open_timeout} s")

    # An instance attribute, not a subclass: new_host() builds the host for us.
    setattr(host, "new_stream", guarded)  # noqa: B010
    return UnguardedHost(new_stream=original)
