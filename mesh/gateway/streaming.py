"""``stream: true``: a generation as server-sent events in OpenAI's chunk format.

The events of one streamed request, in order (:mod:`mesh.gateway.sse` encodes them)::

    chat:        {"delta": {"role": "assistant", "content": ""}}      the role first
                 {"delta": {"content": "<text>"}} ...                 as tokens come
                 {"delta": {}, "finish_reason": "stop" | "length"}    the end
    completions: {"text": "<text>"} ...  then  {"text": "", "finish_reason": ...}
    with stream_options.include_usage: a last chunk with ``"choices": []`` and ``usage``
    data: [DONE]

**Receipts.** The last chunk before ``[DONE]`` (the finish chunk, or the usage
chunk when asked for) carries the ``mesh`` field a non-streamed response has
(receipts, signed tasks, outputs, workers, task ids, mode, seed): the receipt
exists only once the worker finished, after the headers went out, and HTTP
trailers are not an option (OpenAI's clients, httpx among them, never read
them). With OpenAI's Python client: ``chunk.model_extra["mesh"]`` on the last
chunk. Every chunk's ``id`` is the task's id (``chatcmpl-<task id hex>``), known
before the first token, so a caller can match the receipt to the stream.

**Errors.** Everything that can fail before the first token (bad requests, no
peers, every worker busy, deadline) is an ordinary HTTP error in OpenAI's shape:
the response starts only once the mesh stream gave its first chunk. After that,
a failure (the stream could not go on, the result did not verify, the deadline
passed) is one event ``data: {"error": {"message", "type", "param", "code"}}``
and the stream ends without ``[DONE]``; OpenAI's Python client raises it as an
``APIError``.

``stop`` sequences: text that might begin one is held back until it cannot
(:class:`StopScanner`), so the streamed text is exactly the text a non-streamed
request returns; the task still runs to its ``max_tokens`` (they are signed), so
usage counts every token the worker ran, as without streaming.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mesh.client.streaming import StreamChunk, TokenStream
from mesh.errors import MeshError
from mesh.gateway import evidence, responses, sse
from mesh.gateway.catalog import ModelEntry
from mesh.gateway.errors import from_mesh_error

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """One generation task as the gateway prepared it (limits checked, seed chosen)."""

    entry: ModelEntry
    inputs: dict[str, list[str]]
    params: dict[str, int]
    prompt_tokens: int
    stop: tuple[str, ...]
    chat: bool

    @property
    def seed(self) -> int:
        return self.params["seed"]

    @property
    def max_tokens(self) -> int:
        return self.params["max_tokens"]


@dataclass(frozen=True)
class StreamReply:
    """A streamed answer: the events (bytes), the headers, the request log's words."""

    events: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    log: str = ""


class StopScanner:
    """Cuts streamed text before the first stop sequence, holding back what may begin one.

    The text given out is exactly the text cut at the earliest occurrence of any
    stop sequence, as :func:`mesh.gateway.responses.read_generation` cuts a whole text.

    Args:
        stop: the stop sequences (non-empty strings).
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = tuple(s for s in stop if s)
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """The part of ``text`` (after what was held) that can go out now."""
        if self.stopped:
            return ""
        buffer = self._held + text
        found = self._earliest(buffer)
        # A stop sequence that may still complete could begin before the one found:
        # text from there waits (a longer stop beginning earlier wins, as in a whole text).
        keep = self._may_begin_a_stop(buffer)
        pending = len(buffer) - keep if keep else None
        if found is not None and (pending is None or found <= pending):
            self.stopped = True
            self._held = ""
            return buffer[:found]
        limit = len(buffer) if pending is None else pending
        self._held = buffer[limit:]
        return buffer[:limit]

    def finish(self) -> str:
        """What is still held once the text ended, up to a stop sequence in it."""
        if self.stopped:
            return ""
        held, self._held = self._held, ""
        found = self._earliest(held)
        if found is not None:
            self.stopped = True
            return held[:found]
        return held

    def _earliest(self, buffer: str) -> int | None:
        """Where the earliest complete stop sequence in ``buffer`` begins, if any."""
        cuts = [buffer.find(s) for s in self._stop if s in buffer]
        return min(cuts) if cuts else None

    def _may_begin_a_stop(self, buffer: str) -> int:
        """The longest end of ``buffer`` that is a proper beginning of a stop sequence."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest


async def open_events(
    stream: TokenStream, job: Generation, *, include_usage: bool, verify: str, log: str
) -> StreamReply:
    """Wait for the stream's first chunk, then the reply whose events carry the rest.

    Raises:
        MeshError: the stream failed before its first chunk (an HTTP error then).
    """
    try:
        first: StreamChunk | None = await stream.__anext__()
    except StopAsyncIteration:
        first = None  # ended at once: every token came with the result
    except BaseException:
        stream.cancel()  # nobody will read it (an error, or the request's deadline)
        raise
    writer = _EventWriter(stream, job, include_usage=include_usage, verify=verify)
    headers = {"X-Mesh-Task-Id": stream.task_id.hex(), "Cache-Control": "no-cache"}
    return StreamReply(writer.events(first), headers, log)


class _EventWriter:
    """Turns one token stream into OpenAI's chunk events."""

    def __init__(
        self, stream: TokenStream, job: Generation, *, include_usage: bool, verify: str
    ) -> None:
        self._stream = stream
        self._job = job
        self._include_usage = include_usage
        self._verify = verify
        self._stop = StopScanner(job.stop)
        self._sent = ""
        prefix = "chatcmpl" if job.chat else "cmpl"
        self._id = f"{prefix}-{stream.task_id.hex()}"
        # The client's signed creation time of the task: the same in every chunk.
        self._created = stream.task.message.created_ms // 1000

    async def events(self, first: StreamChunk | None) -> AsyncIterator[bytes]:
        try:
            if self._job.chat:
                yield self._event(self._chunk(role="assistant", content=""))
            if first is not None:
                for event in self._text(first.text):
                    yield event
            async for chunk in self._stream:
                for event in self._text(chunk.text):
                    yield event
            for event in self._end():
                yield event
        except MeshError as exc:
            error = from_mesh_error(exc)
            logger.warning("stream %s failed after its first chunk: %s", self._id, exc)
            yield sse.encode_event(error.body())
        finally:
            # The caller left (its connection closed) or the stream ended: either
            # way nothing reads it any more; a finished stream has nothing to stop.
            self._stream.cancel()

    def _text(self, text: str) -> list[bytes]:
        out = self._stop.push(text)
        if not out:
            return []
        self._sent += out
        return [self._event(self._chunk(content=out))]

    def _end(self) -> list[bytes]:
        tail = self._stop.finish()
        events = []
        if tail:
            self._sent += tail
            events.append(self._event(self._chunk(content=tail)))
        result = self._stream.result
        job = self._job
        generation = responses.read_generation(
            result.outputs, eos_id=job.entry.eos_id, max_tokens=job.max_tokens, stop=job.stop
        )
        if generation.text != self._sent:  # the client checked the stream: a bug if it differs
            logger.error("stream %s: streamed text differs from the result's", self._id)
        usage = responses.usage(job.prompt_tokens, len(generation.token_ids))
        mesh = evidence.mesh_field([result], verify=self._verify, seed=job.seed)
        finish = self._chunk(finish_reason=generation.finish_reason)
        if self._include_usage:
            events.append(self._event(finish))
            events.append(self._event(self._usage_chunk(usage, mesh)))
        else:
            finish["mesh"] = mesh
            events.append(self._event(finish))
        events.append(sse.DONE)
        return events

    def _chunk(
        self,
        *,
        content: str | None = None,
        role: str | None = None,
        finish_reason: str | None = None,
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {"usage": None} if self._include_usage else {}
        model = self._job.entry.name
        if self._job.chat:
            return sse.chat_chunk(
                id=self._id,
                model=model,
                created=self._created,
                content=content,
                role=role,
                finish_reason=finish_reason,
                extra=extra,
            )
        return sse.completion_chunk(
            id=self._id,
            model=model,
            created=self._created,
            text=content or "",
            finish_reason=finish_reason,
            extra=extra,
        )

    def _usage_chunk(self, usage: Mapping[str, int], mesh: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk" if self._job.chat else "text_completion",
            "created": self._created,
            "model": self._job.entry.name,
            "choices": [],
            "usage": dict(usage),
            "mesh": mesh,
        }

    @staticmethod
    def _event(chunk: dict[str, Any]) -> bytes:
        return sse.encode_event(chunk)
