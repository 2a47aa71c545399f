"""A deadline around a library call, with its errors translated at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from mesh.errors import DeadlineExceeded, NetworkError
from mesh.net.streams import STREAM_ERRORS


@contextmanager
def library_deadline(seconds: float, what: str) -> Iterator[None]:
    """Run the block under ``trio.fail_after(seconds)``.

    Raises:
        DeadlineExceeded: the block ran past ``seconds`` (frozen peers make
            py-libp2p 0.8.1 calls hang 10-30 s; notes, bug 6).
        NetworkError: the library raised one of its own errors.
    """
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError as exc:
        raise DeadlineExceeded(f"{what} ran past {seconds} s") from exc
    except STREAM_ERRORS as exc:
        raise NetworkError(f"{what} failed: {exc!r}") from exc
