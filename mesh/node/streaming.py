"""Streaming a task's tokens to its requester as partial answers, with bounded buffering.

Only for a request that asked (``"stream": true``, see :mod:`mesh.core.messages`).
The runner's token hook runs on the trio thread and must not block: it appends
the new ids and text to a pending piece and wakes one sender task, which sends
whatever is pending as one :class:`~mesh.core.messages.Partial`. While a send is
in progress, new tokens coalesce into the next piece. So a slow reader never
blocks the decode loop (other tasks share its steps), never makes the node hold
more than the task's own output (which it holds for the result anyway), and
gets fewer, larger partials instead.

Pace: the first partial goes out at once (time to first token), later ones at
most every :meth:`StreamPace.interval`, with what came meanwhile, and the last
one as soon as the task ends. The interval is at least :data:`PARTIAL_INTERVAL_S`
and grows with the node's number of streams, so that all of them together send
at most :data:`PARTIALS_PER_S`: partials cost the node's event loop, which also
schedules the decode steps, and streaming must not starve generation.

Order: every token is sent, in order, before the final answer: after the
runner returns (or fails), the sender sends what is pending and stops, and only
then does the handler answer. The first partial names the runtime class.

The requester going away ends the work: a send that fails (the stream was reset,
or the reader stopped reading for longer than the transport's write deadline)
raises :class:`~mesh.errors.PeerUnavailable`, which cancels the runner's call
(the executor drops the task from its batch at the next step), so no receipt is
issued and the handler's caller closes the stream.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import trio

from mesh.aio.groups import unwrap_single_error
from mesh.core.messages import Partial, RuntimeValue
from mesh.core.partials import token_tensor
from mesh.errors import MeshError, PeerUnavailable
from mesh.net.interface import SendPartial
from mesh.node.runner import TokenHook

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Least time between two partials of one task. A partial costs ~100 us of CPU on
# each side in py-libp2p 0.8.1 (measured: 215 us for both, 130-byte partials on
# loopback), then more in whatever relays it (the gateway's SSE events): a fast
# model's one-token partials would cost more than its tokens. 20 ms caps that at
# 50 partials/s per stream, a rate no reader notices (a screen refreshes at 60 Hz).
PARTIAL_INTERVAL_S = 0.02
# A node's partials per second, all its streams together. Each partial costs the
# node ~125 us of event-loop CPU and the gateway relaying it ~210 us (measured at
# 32 streams of bench-gpt on 2 CPUs), and the node's loop shares the interpreter
# with its decode thread: every partial slows generation. Measured there, gateway
# tokens/s over in-process: 0.84-0.85 at 400/s, 0.88-0.91 at 100/s. So 100/s:
# at 32 streams each gets a partial every 320 ms (~8 tokens of bench-gpt), at 8
# every 80 ms, and below 5 every PARTIAL_INTERVAL_S; the first partial of a task
# never waits (time to first token).
PARTIALS_PER_S = 100.0


class StreamPace:
    """How often each of one node's streams may send: a partial budget shared by all.

    Args:
        per_s: partials per second, all streams together.
        floor_s: the least interval, however few streams run.
    """

    def __init__(
        self, *, per_s: float = PARTIALS_PER_S, floor_s: float = PARTIAL_INTERVAL_S
    ) -> None:
        self._per_s = per_s
        self._floor_s = floor_s
        self.active = 0  # streams running now

    def interval(self) -> float:
        """Seconds between two partials of one stream, now."""
        return max(self._floor_s, self.active / self._per_s)

    @contextlib.contextmanager
    def streaming(self) -> Iterator[None]:
        """Count one stream for the duration of the block."""
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


class PartialPump:
    """Sends one task's tokens as partials, coalescing those that come during a send.

    Args:
        task_id: the task's id.
        send_partial: the transport's partial writer for this request.
        runtime: the worker's runtime class, named in the first partial.
        pace: the node's shared pace (a pace of its own when None).
    """

    def __init__(
        self,
        task_id: bytes,
        send_partial: SendPartial,
        runtime: dict[str, RuntimeValue],
        *,
        pace: StreamPace | None = None,
    ) -> None:
        self._task_id = task_id
        self._send = send_partial
        self._runtime = runtime
        self._pace = pace or StreamPace()
        self._next_send = -math.inf  # trio time before which no partial goes (but the last)
        self._ids: list[int] = []
        self._text: list[str] = []
        self._wake = trio.Event()
        self._pacing = False  # waiting out the interval: new tokens need not wake the pump
        self._closed = False
        self.sent = 0  # partials sent
        self.tokens = 0  # token ids sent

    @property
    def pending(self) -> bool:
        """Tokens or text wait to be sent."""
        return bool(self._ids or self._text)

    def push(self, ids: Sequence[int], text: str) -> None:
        """The runner's token hook: queue ``ids`` and ``text`` (never blocks)."""
        if self._closed:
            raise RuntimeError("tokens pushed after the stream closed")
        if ids or text:
            self._ids.extend(ids)
            if text:
                self._text.append(text)
            if not self._pacing:
                self._wake.set()

    def close(self) -> None:
        """No more tokens: :meth:`run` sends what is pending, then returns."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Send pending pieces until closed and empty.

        Raises:
            PeerUnavailable: the requester went away or stopped reading.
        """
        while True:
            if self.pending and not self._closed and trio.current_time() < self._next_send:
                # Too soon after the last partial: let more tokens join this one,
                # without waking for each (at 32 streams that was 32 task switches
                # per decode step); closing wakes us: the last partial never waits.
                self._pacing = True
                try:
                    with trio.move_on_at(self._next_send):
                        await self._wake.wait()
                finally:
                    self._pacing = False
                self._wake = trio.Event()
            if self.pending:
                self._next_send = trio.current_time() + self._pace.interval()
                await self._send_pending()
            elif self._closed:
                return
            else:
                await self._wake.wait()
                self._wake = trio.Event()

    async def _send_pending(self) -> None:
        ids, text = self._ids, "".join(self._text)
        self._ids, self._text = [], []
        partial = Partial(
            task_id=self._task_id,
            seq=self.sent,
            runtime=self._runtime if self.sent == 0 else {},
            outputs={"text": [text], "token_ids": token_tensor(ids)},
        )
        try:
            await self._send(partial.encode())
        except trio.TooSlowError as exc:  # the libp2p adapter's write deadline
            raise PeerUnavailable("the requester stopped reading the stream") from exc
        self.sent += 1
        self.tokens += len(ids)


async def stream_partials(
    execute: Callable[[TokenHook], Awaitable[T]],
    *,
    task_id: bytes,
    send_partial: SendPartial,
    runtime: dict[str, RuntimeValue],
    pace: StreamPace | None = None,
) -> T:
    """Run ``execute(hook)`` while its tokens go out as partials; return its result.

    ``pace`` is the node's :class:`StreamPace` (its streams share its budget).

    ``execute`` must raise only MeshErrors (the handler's runner call does). When
    it returns or fails, what it produced so far is sent before this returns or
    re-raises, so partials never interleave with the final answer.

    Raises:
        PeerUnavailable: the requester went away (``execute`` was cancelled).
        MeshError: what ``execute`` raised.
    """
    pace = pace or StreamPace()
    pump = PartialPump(task_id, send_partial, runtime, pace=pace)
    failure: MeshError | None = None
    result: T | None = None
    with unwrap_single_error(), pace.streaming():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump.run)
            try:
                result = await execute(pump.push)
            except MeshError as exc:
                # Not raised here: that would cancel the pump in the middle of a
                # frame; it finishes what is pending first (a partial answer
                # before the error answer is still a well-formed answer).
                failure = exc
            pump.close()
    logger.debug(
        "task %s streamed %d tokens in %d partials", task_id.hex()[:8], pump.tokens, pump.sent
    )
    if failure is not None:
        raise failure
    assert result is not None
    return result
