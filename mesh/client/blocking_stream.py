"""A token stream read from a plain thread: :meth:`mesh.Client.stream`'s iterator.

The stream itself (:class:`~mesh.client.streaming.TokenStream`) lives on the
client's trio loop thread; each ``next`` hands one read to that thread and
waits for it. Chunks the caller has not asked for yet wait on the loop thread,
coalesced into one (bounded by the task's output), so the caller's pace never
blocks the network. ``close()`` (or leaving ``with``, or dropping an iterator
left early: CPython closes it when its last reference goes) stops the stream's
work on the loop thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType

import trio

from mesh.client.results import RunResult
from mesh.client.streaming import StreamChunk, TokenStream


class BlockingTokenStream(Iterator[StreamChunk]):
    """Iterates a :class:`TokenStream` from outside its loop thread.

    Args:
        stream: the stream, on the loop thread.
        token: the loop's token.
    """

    def __init__(self, stream: TokenStream, token: trio.lowlevel.TrioToken) -> None:
        self._stream = stream
        self._token = token
        self._closed = False

    @property
    def task_id(self) -> bytes:
        """The id of the signed task the stream runs."""
        return self._stream.task_id

    @property
    def result(self) -> RunResult:
        """The verified result, once the stream was read to its end (else StreamError)."""
        return self._stream.result

    def __iter__(self) -> BlockingTokenStream:
        return self

    def __next__(self) -> StreamChunk:
        if self._closed:
            raise StopIteration
        chunk = trio.from_thread.run(self._next, trio_token=self._token)
        if chunk is None:
            raise StopIteration
        return chunk

    async def _next(self) -> StreamChunk | None:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            return None

    def collect(self) -> RunResult:
        """Read the rest (dropping the chunks) and return the verified result."""
        for _ in self:
            pass
        return self.result

    def close(self) -> None:
        """Stop the stream's work (idempotent; a stream read to its end has none left)."""
        if self._closed:
            return
        self._closed = True
        if self._stream.done:
            return
        # The loop may be gone (client closed) or be this very thread (a stray
        # reference dropped there): then there is nothing to hand the stop to.
        with contextlib.suppress(trio.RunFinishedError, RuntimeError):
            trio.from_thread.run_sync(self._stream.cancel, trio_token=self._token)

    def __enter__(self) -> BlockingTokenStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
