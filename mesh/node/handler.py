"""The node's handler for ``/mesh/task/1.0.0``: checks, admission, run, receipt.

Order of the checks (each failure is an ErrorReply with its code; see
``mesh.errors``):

1. decode the request, verify the task's signature and that the inputs hash to
   the signed ``input_hash`` (``malformed``, ``too-large``, ``bad-signature``);
   bytes that are not even MessagePack close the stream instead (raise);
2. the task's validity window against the node's clock (``expired``);
3. the target: a task pinned to another worker is refused (``malformed``);
4. the model is one this node serves (``unknown-model``);
5. the inputs and params fit the model (``invalid-input``), before anything is
   spent on the task;
6. not seen before (``replayed``): in the replay cache, or in flight here;
7. admission: a cap per client key, and the node's places shared between
   sources (address prefix, transport peer, key; ``busy`` with
   ``retry_after_ms``): a newcomer from a source holding fewer places may take
   a waiting task's place (that task is answered ``busy``);
8. the task waits for its turn at the runner (:mod:`mesh.node.gate`: fair
   between sources, per model); when it starts, the replay cache records it
   (only tasks that start running take an entry: a refused, displaced or
   dropped task keeps its nonce);
9. the runner (``invalid-input``, ``internal``), off the event loop; for a
   request that asked to stream, its tokens go out as partial answers as they
   come (:mod:`mesh.node.streaming`), and a requester gone mid-stream stops it;
10. the receipt, issued from the chained receipt log, then the result.

A batched task (:mod:`mesh.core.batch`) takes the same steps once for all its
items: each item is checked in step 5, the batch costs its item count at the
gate in step 8, step 9 runs every item (:mod:`mesh.node.batching`) and step 10
issues one receipt over the Merkle root of their outputs.

The task's expiry is a deadline on the node: waiting or running past it, the
task is dropped and answered ``expired``. A requester that goes away (resets
or closes the stream) has its task cancelled too, by the stream server
(:func:`mesh.net.streams.serve_stream`). Refusals are logged one line each,
rate-limited per code, never with a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import trio

from mesh.aio.clock import WallClock
from mesh.aio.ratelog import RateLimitedLog
from mesh.core import canonical
from mesh.core.batch import BatchRequest, decode_any_request, encode_batch_result
from mesh.core.envelope import Signed
from mesh.core.identity import Identity
from mesh.core.messages import (
    BATCH_PARAM,
    ErrorReply,
    Receipt,
    Request,
    RuntimeValue,
    Task,
    encode_result,
)
from mesh.core.partials import runtime_class
from mesh.core.replay import ReplayCache
from mesh.core.signing import verify_task
from mesh.core.tensors import Tensor
from mesh.core.values import Values, values_hash
from mesh.errors import (
    Busy,
    Expired,
    InternalError,
    InvalidInput,
    MalformedMessage,
    MeshError,
    ProtocolError,
    Replayed,
    UnknownModel,
)
from mesh.net.interface import Inbound, SendPartial
from mesh.node.admission import Admission, ThroughputMeter
from mesh.node.batching import BatchExecution, encode_outputs, execute_items
from mesh.node.gate import RunGate
from mesh.node.lifecycle import TaskState, TaskTable
from mesh.node.pacing import RefusalPacer
from mesh.node.receipt_log import ReceiptLog
from mesh.node.runner import ExecutionLike, TaskRunner, TokenHook
from mesh.node.sources import Source, source_of
from mesh.node.streaming import StreamPace, stream_partials

logger = logging.getLogger(__name__)
# One line per refused task, rate-limited per error code (a flood of bad tasks
# must not flood the log), and per runner failure.
refusals = RateLimitedLog(logger)

T = TypeVar("T")
# How the handler calls the blocking receipt-log append (fsync): a worker thread
# by default; component tests on MockClock pass an inline caller.
BlockingCall = Callable[[Callable[[], Signed[Receipt]]], Awaitable[Signed[Receipt]]]


async def run_in_thread(fn: Callable[[], T]) -> T:
    """Run blocking ``fn`` (an fsync) in a worker thread, off the event loop."""
    return await trio.to_thread.run_sync(fn)


# Decoding, hashing and encoding a message this big takes milliseconds of CPU
# (SHA-256 ~1.4 GB/s here, plus msgpack): do it in a worker thread so the event
# loop keeps serving other streams. Small messages stay inline (a thread hop
# costs ~50 us, and component tests on MockClock must not see threads).
OFFLOAD_BYTES = 1024 * 1024


async def _off_loop_if_big(size: int, fn: Callable[..., T], *args: Any) -> T:
    if size > OFFLOAD_BYTES:
        return await trio.to_thread.run_sync(functools.partial(fn, *args))
    return fn(*args)


class TaskObserver(Protocol):
    """What the handler reports as it answers (the node's metrics, mesh.node.metrics)."""

    def answered(
        self, model_root: bytes | None, code: str, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        """One request answered with ``code`` ("ok", an error code, or "no-reply" when
        the stream was closed without a reply) after ``seconds``."""

    def executed(self, model_root: bytes, batch_size: int, compute_ms: float) -> None:
        """One task ran in a batch of ``batch_size`` and got its receipt."""


@dataclass(slots=True)
class _Answer:
    """What one request came to, filled in while it is answered."""

    code: str = "no-reply"  # until a reply is built: garbage or cancelled, no answer
    model_root: bytes | None = None


def _values_bytes(values: Values) -> int:
    return sum(
        len(v.data) if isinstance(v, Tensor) else sum(len(t) for t in v) for v in values.values()
    )


class TaskHandler:
    """Answers task requests; one instance per node, shared by all streams."""

    def __init__(
        self,
        *,
        identity: Identity,
        runner: TaskRunner,
        receipt_log: ReceiptLog,
        replay: ReplayCache,
        admission: Admission,
        table: TaskTable,
        meter: ThroughputMeter,
        wall_clock: WallClock,
        gate: RunGate,
        blocking: BlockingCall | None = None,
        observer: TaskObserver | None = None,
        receipt_claims: Mapping[str, RuntimeValue] | None = None,
    ) -> None:
        self._identity = identity
        self._runner = runner
        self._log = receipt_log
        self._replay = replay
        self._admission = admission
        self._table = table
        self._meter = meter
        self._now_ms = wall_clock
        self._gate = gate
        self._pacer = RefusalPacer()
        self._blocking = blocking or run_in_thread
        # Metrics hooks (mesh.node.metrics); None: nobody watches.
        self._observer = observer
        # Added to every receipt's runtime claim: the price in force (mesh.node.pricing).
        self._claims = dict(receipt_claims or {})
        self._stream_pace = StreamPace()  # this node's streams share one partial budget
        self.answered: dict[str, int] = {}  # reply code ("ok" or error code) -> count

    async def handle(self, inbound: Inbound) -> bytes:
        """Answer one request message (see the module docstring for the order)."""
        answer = _Answer()
        started = trio.current_time()
        try:
            reply = await self._handle(inbound, answer)
        except BaseException:
            if self._observer is not None:  # garbage or cancelled: no reply goes out
                self._observer.answered(
                    None, answer.code, trio.current_time() - started, len(inbound.message), 0
                )
            raise
        self._count(answer.code)
        if self._observer is not None:
            self._observer.answered(
                answer.model_root,
                answer.code,
                trio.current_time() - started,
                len(inbound.message),
                len(reply),
            )
        return reply

    async def _handle(self, inbound: Inbound, answer: _Answer) -> bytes:
        remote_peer, message = inbound.peer_id, inbound.message
        try:
            request = await _off_loop_if_big(len(message), decode_any_request, message)
        except MalformedMessage as exc:
            # Not even MessagePack: no reply makes sense, the stream is closed.
            # (canonical.decode raises here, outside any handler of ours.)
            canonical.decode(message)
            return self._refuse(remote_peer, exc, b"", answer)
        except ProtocolError as exc:
            return self._refuse(remote_peer, exc, b"", answer)
        task = request.task
        answer.model_root = task.message.model_root
        source = source_of(inbound.peer_id, inbound.addr, task.message.client)
        # A batch's items (a list) or one task's inputs (a map).
        payload = request.items if isinstance(request, BatchRequest) else request.inputs
        # Partials only for a requester that asked for them (mesh.node.streaming);
        # a batch never streams.
        stream = inbound.send_partial if isinstance(request, Request) and request.stream else None
        try:
            reply = await self._handle_task(inbound, task, payload, source, stream)
        except ProtocolError as exc:
            refused = self._refuse(remote_peer, exc, task.digest, answer)
            await self._pace(source)
            return refused
        answer.code = "ok"
        return reply

    async def _pace(self, source: Source) -> None:
        """Hold a refusal back from a source that holds a lot or is refused a lot.

        See :mod:`mesh.node.pacing`: it costs the node nothing and slows a flood.
        """
        delay = self._pacer.delay(
            source,
            holding=self._table.holding(source),
            share=self._admission.per_client,
            capacity=self._admission.capacity,
            now=trio.current_time(),
        )
        if delay:
            await trio.sleep(delay)

    def _refuse(
        self, remote_peer: str, exc: ProtocolError, task_id: bytes, answer: _Answer
    ) -> bytes:
        answer.code = exc.code
        refusals.info(
            exc.code,
            "task %s from %s refused: %s %s",
            task_id.hex()[:8],
            remote_peer,
            exc.code,
            exc,
        )
        return ErrorReply.from_exception(exc, task_id=task_id).encode()

    async def _handle_task(
        self,
        inbound: Inbound,
        task: Signed[Task],
        inputs: Values | list[Values],
        source: Source,
        stream: SendPartial | None,
    ) -> bytes:
        body = task.message
        now_ms = self._now_ms()
        verify_task(task, now_ms=now_ms)
        if body.target and body.target != self._identity.public_key:
            raise MalformedMessage("task is addressed to another worker")
        if body.model_root not in self._runner.models:
            raise UnknownModel(f"model {body.model_root.hex()[:16]} is not served here")
        params = dict(body.params)
        if isinstance(inputs, list):  # a batch: every item must fit before any runs
            item_params = {k: v for k, v in params.items() if k != BATCH_PARAM}
            for index, item in enumerate(inputs):
                try:
                    self._runner.validate(body.model_root, item, item_params)
                except InvalidInput as exc:
                    raise InvalidInput(f"item {index}: {exc}") from exc
        else:
            self._runner.validate(body.model_root, inputs, params)
        # A replay is refused before it takes a place; the nonce is recorded only
        # when the task starts (below), so a task refused or dropped before then
        # keeps its nonce and can come back (here or elsewhere).
        self._replay.check(task, now_ms)
        if task.digest in self._table:
            raise Replayed("this task is already in flight here")
        # Nothing awaits between the check and the admit: the place cannot be taken meanwhile.
        victim = self._admission.check(body.client, now=trio.current_time(), source=source)
        if victim is not None:
            self._displace(victim)
        self._table.admit(task.digest, body.client, source=source, model=body.model_root)
        # The task's expiry is a deadline here too: past it nobody wants the answer.
        expiry = trio.current_time() + max(0.0, (body.expires_ms - now_ms) / 1000)
        try:
            with trio.move_on_at(expiry):
                return await self._run(inbound.peer_id, task, inputs, params, source, stream)
            raise Expired("the task expired on this node before it finished")
        finally:
            self._table.fail(task.digest)  # a no-op once answered (closed)
            self._meter.record(trio.current_time())

    def _displace(self, victim: bytes) -> None:
        """A waiting task gives its place to a source holding fewer (answered busy)."""
        self._table.fail(victim)
        self._gate.displace(
            victim,
            Busy(
                "displaced by a source holding fewer places on this node",
                retry_after_ms=self._admission.retry_after_ms(1, now=trio.current_time()),
            ),
        )

    async def _run(
        self,
        remote_peer: str,
        task: Signed[Task],
        inputs: Values | list[Values],
        params: dict[str, int],
        source: Source,
        stream: SendPartial | None,
    ) -> bytes:
        body = task.message
        self._table.move(task.digest, TaskState.QUEUED)
        started_ms = self._now_ms()

        def on_start() -> None:
            # The runner calls this when the task's batch starts: the receipt's
            # start time is then, not when the task joined the queue.
            nonlocal started_ms
            started_ms = self._now_ms()

        # Generation work grows with max_tokens; other tasks cost one unit each,
        # and a batch the sum of its items.
        cost = max(1, params.get("max_tokens", 1))
        if isinstance(inputs, list):
            cost *= len(inputs)
        execution: ExecutionLike | BatchExecution
        async with self._gate.turn(body.model_root, source.path, task.digest, cost=cost):
            # The gate moved it to RUNNING. Recorded now that it starts: replay
            # entries <= start rate x window.
            self._replay.check_and_add(task, now_ms=self._now_ms())
            started_ms = self._now_ms()
            if isinstance(inputs, list):  # a batched task's items (mesh.core.batch)
                execution = await self._execute_batch(body.model_root, inputs, params, on_start)
            else:
                execute = functools.partial(
                    self._execute, body.model_root, inputs, params, on_start
                )
                if stream is None:
                    execution = await execute(None)
                else:
                    execution = await stream_partials(
                        execute,
                        task_id=task.digest,
                        send_partial=stream,
                        runtime=runtime_class(self._runner.runtime_class(body.model_root)),
                        pace=self._stream_pace,
                    )
            self._table.move(task.digest, TaskState.DONE)  # frees its place at the gate
        finished_ms = self._now_ms()
        self._table.require_done(task.digest)
        encoded: list[bytes] = []
        if isinstance(execution, BatchExecution):
            out_bytes = sum(_values_bytes(o) for o in execution.outputs)
            encoded, output_hash = await _off_loop_if_big(
                out_bytes, encode_outputs, execution.outputs
            )
            commitment = b""
        else:
            out_bytes = _values_bytes(execution.outputs)
            output_hash = await _off_loop_if_big(out_bytes, values_hash, execution.outputs)
            commitment = execution.commitment

        def issue() -> Signed[Receipt]:
            return self._log.issue(
                task_id=task.digest,
                client=body.client,
                model_root=body.model_root,
                runtime={**execution.runtime, **self._claims},
                output_hash=output_hash,
                started_ms=started_ms,
                finished_ms=finished_ms,
                commitment=commitment,
            )

        try:
            receipt = await self._blocking(issue)
        except ProtocolError:
            raise
        except MeshError as exc:
            # The receipt log could not be written (disk full...): without a
            # receipt there is no result to give; the client retries elsewhere.
            logger.error("cannot issue a receipt: %s", exc)
            raise InternalError("this worker cannot issue receipts") from exc
        self._table.close(task.digest)
        if self._observer is not None:
            self._observer.executed(body.model_root, execution.batch_size, execution.compute_ms)
        logger.info(
            "task %s from %s done: model %s seq %d batch %d compute %.1f ms",
            task.digest.hex()[:8],
            remote_peer,
            body.model_root.hex()[:8],
            receipt.message.seq,
            execution.batch_size,
            execution.compute_ms,
        )
        if isinstance(execution, BatchExecution):
            return encode_batch_result(receipt, execution.outputs, encoded=encoded)
        return await _off_loop_if_big(out_bytes, encode_result, receipt, execution.outputs)

    async def _execute_batch(
        self,
        model_root: bytes,
        items: list[Values],
        params: dict[str, int],
        on_start: Callable[[], None],
    ) -> BatchExecution:
        try:
            return await execute_items(self._runner, model_root, items, params, on_start)
        except MeshError:
            raise
        except Exception as exc:
            refusals.log(
                logging.ERROR,
                "runner-failed",
                "runner failed on a batch of model %s: %r",
                model_root.hex()[:8],
                exc,
                exc_info=True,
            )
            raise InternalError("the model failed on this batch") from exc

    async def _execute(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        on_start: Callable[[], None],
        on_tokens: TokenHook | None,
    ) -> ExecutionLike:
        try:
            return await self._runner.run(
                model_root, inputs, params, on_start=on_start, on_tokens=on_tokens
            )
        except MeshError:
            raise
        except Exception as exc:
            # A bug or a torch failure in one task must not take the node down:
            # the client gets "internal" and retries elsewhere; we keep the trace
            # (a bug, not bad input), rate-limited.
            refusals.log(
                logging.ERROR,
                "runner-failed",
                "runner failed on model %s: %r",
                model_root.hex()[:8],
                exc,
                exc_info=True,
            )
            raise InternalError("the model failed on this task") from exc

    def _count(self, code: str) -> None:
        self.answered[code] = self.answered.get(code, 0) + 1
