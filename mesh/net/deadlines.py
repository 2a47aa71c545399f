"""Library calls under a deadline, with their errors translated at the boundary.

Everything py-libp2p 0.8.1 (and trio under it) may raise out of a dial, a
stream, a DHT or a pubsub call becomes a :class:`mesh.errors.NetworkError`,
except a resource this peer closed itself, which is :class:`mesh.errors.Closed`
(trio's distinction between closed by us and broken by the peer).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio
from libp2p.peer.peerdata import PeerDataError
from libp2p.tools.anyio_service.exceptions import ServiceException

from mesh.errors import Closed, DeadlineExceeded, NetworkError
from mesh.net.streams import STREAM_ERRORS

# Besides the stream errors: a peer the peerstore lacks (a KeyError subclass) and
# a DHT or pubsub service that stopped (LifecycleError and its kin).
LIBRARY_ERRORS: tuple[type[BaseException], ...] = (*STREAM_ERRORS, PeerDataError, ServiceException)


@contextmanager
def library_errors(what: str) -> Iterator[None]:
    """Translate the library's errors raised in the block (see the module docstring)."""
    try:
        yield
    except trio.ClosedResourceError as exc:
        raise Closed(f"{what}: used after this peer closed it") from exc
    except LIBRARY_ERRORS as exc:
        raise NetworkError(f"{what} failed: {exc!r}") from exc


@contextmanager
def library_deadline(seconds: float, what: str) -> Iterator[None]:
    """Run the block under ``trio.fail_after(seconds)``, its errors translated.

    Raises:
        DeadlineExceeded: the block ran past ``seconds`` (frozen peers make
            py-libp2p 0.8.1 calls hang 10-30 s; notes, bug 6).
        NetworkError: the library raised one of its own errors.
        Closed: the block used something this peer closed.
    """
    try:
        with trio.fail_after(seconds), library_errors(what):
            yield
    except trio.TooSlowError as exc:
        raise DeadlineExceeded(f"{what} ran past {seconds} s") from exc
