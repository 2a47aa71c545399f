"""Token streams: a generation's tokens as they come, then its verified result.

``AsyncClient.stream(model, inputs, **params)`` returns a :class:`TokenStream`,
an async iterator of :class:`StreamChunk` (new token ids and the text they
complete); once it is exhausted, :attr:`TokenStream.result` is the verified
:class:`~mesh.client.results.RunResult`, exactly as ``run`` returns it::

    async with client.stream("tiny-gpt", {"prompt": ["Hi"]}, max_tokens=32) as stream:
        async for chunk in stream:
            print(chunk.text, end="")
    print(stream.result.receipt.message.output_hash.hex())

Chunks are provisional until the stream ends: a stream that ends without
raising has given exactly the tokens and text of the result it returns, whose
receipt verified (:mod:`mesh.core.partials` holds the rules). How it gets there:

- The request asks the worker for partial answers; a worker streams only then.
- Before the first chunk, failures are retried on other peers as ``run`` does
  (:class:`~mesh.client.sender.TaskSender` and its plan: same deadline, same
  attempt bounds, same lessons about peers).
- A worker that goes away mid-stream (or whose partials turn out not to be its
  signed result): the same signed task (same seed) runs again on another worker.
  Its answer must name the same runtime class as the first worker's (else that
  worker is skipped, :class:`~mesh.errors.OtherRuntimeClass`) and reproduce every
  token and character already given (else :class:`~mesh.errors.StreamDiverged`);
  the stream goes on with what extends them. So no token is given twice or lost.
- If nobody can continue, the stream raises :class:`~mesh.errors.StreamInterrupted`
  (the cause chained, ``yielded`` saying how many tokens were given).

Memory: chunks the caller has not read yet coalesce into one pending chunk (a
slow reader gets fewer, larger chunks), so a stream never holds more than its
task's output, and the worker's answer is read at the network's pace: a slow
reader never makes a worker look slow to the retry plan.

The stream's work runs in the client's nursery from the moment it is created.
Leaving ``async with``, or :meth:`TokenStream.aclose`, stops it (the worker
stops too when it notices the requester gone); a stream read to its end needs
no closing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import trio

from mesh.client.precheck import manifest_for
from mesh.client.results import RunResult
from mesh.client.sender import StreamTap
from mesh.core.envelope import Signed
from mesh.core.messages import Receipt, Task, decode_partial
from mesh.core.partials import AnswerStream, Piece, StreamCursor, token_list
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import (
    Closed,
    InvalidInput,
    MeshError,
    ProtocolError,
    StreamDiverged,
    StreamError,
    StreamInterrupted,
    VerificationError,
)
from mesh.net.interface import OnPartial

logger = logging.getLogger(__name__)

# Sends a signed task with a tap on its partial answers; returns the verified result.
SendStreamed = Callable[[StreamTap], Awaitable[RunResult]]


def check_streams_tokens(model: str | bytes, root: bytes, *, zoo_dirs: Sequence[Path] = ()) -> None:
    """Refuse to stream a model that emits no tokens, when a local zoo knows it.

    Raises:
        InvalidInput: its manifest's kind is not ``generate`` (nothing was sent).
    """
    manifest = manifest_for(model, root, zoo_dirs)
    if manifest is not None and manifest.kind != "generate":
        raise InvalidInput(f"{manifest.name} ({manifest.kind}) emits no tokens to stream")


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """New tokens of a stream.

    Attributes:
        token_ids: the new token ids (may be empty: a last piece of text).
        text: the text they complete (may be ``""``: a token ending mid-character).
        worker: the PeerID of the worker whose answer gave them.
    """

    token_ids: tuple[int, ...]
    text: str
    worker: str


class _Tap:
    """The stream's :class:`~mesh.client.sender.StreamTap`: checks partials, keeps the cursor.

    The task is whatever the sender sends (the stream signs none itself): the
    first attempt's task is the stream's, and a continuation re-sends it.
    """

    def __init__(self, deliver: Callable[[Piece, str], None]) -> None:
        self._deliver = deliver
        self.cursor = StreamCursor()
        self.task: Signed[Task] | None = None
        self._answer: AnswerStream | None = None

    def attempt(self, peer: str, task: Signed[Task]) -> OnPartial:
        if self.task is None:
            self.task = task
        answer = AnswerStream(task.digest)
        self._answer = answer

        async def on_partial(data: bytes) -> None:
            try:
                partial = decode_partial(data)
            except ProtocolError as exc:
                raise VerificationError(f"unreadable partial answer from {peer}: {exc}") from exc
            piece = answer.add(partial)
            if answer.count == 1:
                self.cursor.admit(answer)
            fresh = self.cursor.advance(answer, piece)
            if fresh.token_ids or fresh.text:
                self._deliver(fresh, peer)
            await trio.lowlevel.checkpoint()

        return on_partial

    def finish(self, outputs: Values, receipt: Signed[Receipt]) -> None:
        assert self._answer is not None
        self._answer.check_final(outputs, receipt.message.runtime)
        self.cursor.check_complete(self._answer)


class TokenStream:
    """An async iterator of :class:`StreamChunk`, then :attr:`result` (see the module docstring).

    Made by :meth:`mesh.AsyncClient.stream`; its work starts at once in ``nursery``.

    Args:
        send: sends a signed task with a tap on its partial answers; returns the
            verified result.
        nursery: where the work runs (the client's).
    """

    def __init__(self, send: SendStreamed, nursery: trio.Nursery) -> None:
        self._send = send
        self._tap = _Tap(self._on_piece)
        self._ids: list[int] = []
        self._text: list[str] = []
        self._worker = ""
        self._wake = trio.Event()
        self._scope = trio.CancelScope()
        self._done = False
        self._closed = False
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        nursery.start_soon(self._produce)

    @property
    def task(self) -> Signed[Task]:
        """The signed task the stream runs (known once it was first sent: before any chunk).

        Raises:
            StreamError: it was not sent yet.
        """
        if self._tap.task is None:
            raise StreamError("the stream's task was not sent yet")
        return self._tap.task

    @property
    def task_id(self) -> bytes:
        """The id of the signed task (its receipt will name it); see :attr:`task`."""
        return self.task.digest

    @property
    def given(self) -> int:
        """Token ids received so far (read or pending)."""
        return len(self._tap.cursor.token_ids)

    @property
    def done(self) -> bool:
        """The stream has ended (with a result or an error)."""
        return self._done

    @property
    def result(self) -> RunResult:
        """The verified result, once the stream was read to its end.

        Raises:
            StreamError: the stream has not ended with a result (read it to the end first).
        """
        if self._result is None:
            raise StreamError("the stream has no result: read it to its end first")
        return self._result

    # -- the caller's side -----------------------------------------------------------
    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> StreamChunk:
        """The next chunk: everything that arrived since the last one.

        Raises:
            StopAsyncIteration: the stream ended with a verified result (or was closed).
            MeshError: it ended without one (see the module docstring).
        """
        while True:
            if self._ids or self._text:
                chunk = StreamChunk(tuple(self._ids), "".join(self._text), self._worker)
                self._ids, self._text = [], []
                return chunk
            if self._closed:
                raise StopAsyncIteration
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            await self._wake.wait()
            self._wake = trio.Event()

    async def collect(self) -> RunResult:
        """Read the rest of the stream (dropping its chunks) and return the result."""
        async for _ in self:
            pass
        return self.result

    def cancel(self) -> None:
        """Stop the stream's work now (synchronous: for cleanup from any code on the loop)."""
        self._closed = True
        self._scope.cancel()
        self._wake.set()

    async def aclose(self) -> None:
        """Stop the stream (no more chunks; its worker stops when it notices)."""
        self.cancel()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> TokenStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the work --------------------------------------------------------------------
    def _on_piece(self, piece: Piece, worker: str) -> None:
        self._ids.extend(piece.token_ids)
        if piece.text:
            self._text.append(piece.text)
        self._worker = worker
        self._wake.set()

    async def _produce(self) -> None:
        result: RunResult | None = None
        try:
            with self._scope:  # cancelled by cancel(): then no result and no error
                result = await self._send(self._tap)
            if result is not None:
                self._check_given(result)
                self._result = result
        except MeshError as exc:
            self._error = self._after_tokens(exc)
        except Exception as exc:  # a bug: the caller gets it, the client's nursery lives on
            logger.exception("a token stream failed")
            self._error = exc
        finally:
            if self._result is None and self._error is None:
                self._error = Closed("the stream was stopped before it ended")
            self._done = True
            self._wake.set()

    def _check_given(self, result: RunResult) -> None:
        """What the stream gave is ``result``'s output, exactly.

        The tap checked it against the answer it came from; this holds it against
        what a layer above the sender returns (a verification mode that replaced
        the streamed result with another worker's would otherwise go unnoticed).

        Raises:
            StreamDiverged: the result is not what was streamed.
        """
        ids, texts = result.outputs.get("token_ids"), result.outputs.get("text")
        cursor = self._tap.cursor
        if (
            not isinstance(ids, Tensor)
            or token_list(ids) != cursor.token_ids
            or texts != [cursor.text]
        ):
            raise StreamDiverged("the stream's result is not the output it streamed")

    def _after_tokens(self, exc: MeshError) -> MeshError:
        """The error to raise: once tokens were given, a failure to go on says so."""
        given = len(self._tap.cursor.token_ids)
        if not given or isinstance(exc, (StreamDiverged, StreamInterrupted, VerificationError)):
            return exc
        error = StreamInterrupted(
            f"the stream stopped after {given} tokens and no worker could continue it: {exc}",
            yielded=given,
        )
        error.__cause__ = exc
        return error
