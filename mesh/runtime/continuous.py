"""Continuous batching for a generation lane: tasks join and leave a running decode loop.

The loop holds up to ``max_batch`` running sequences. Before each step it drops
the sequences whose jobs are no longer waiting (client gone, hook failed) and
admits queued tasks into the free slots; then one step runs in a worker thread
under the executor's device limiter (so other lanes' batches interleave between
steps): the newcomers' prompts are prefilled in the same forward pass as the
others' one-token decode (:meth:`~mesh.runtime.generate.Generator.step`). After
the step, on the trio thread, every task's new token goes to its hook, and the
finished tasks are resolved at once, freeing their slots for the next step.

Failures, chosen so that one bad task costs as little as possible:

- a task whose inputs fail to open (tokenizing, ids) fails alone, before the step;
- a step that raises fails the tasks *in that step* with ``InternalError``: their
  caches may be half-extended, so none of them can go on. Queued tasks are not
  touched and the lane keeps serving;
- building one finished task's outputs or commitment fails that task only.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import trio

from mesh.errors import InternalError, MeshError
from mesh.runtime.device import apply_thread_count
from mesh.runtime.generate import Decoding, Generator
from mesh.runtime.job import Execution, Job, Lane
from mesh.runtime.output import ModelOutput

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Seat:
    """A running task: its job, its sequence, and the figures its Execution reports."""

    job: Job
    decoding: Decoding
    batch_size: int = 0
    compute_ms: float = 0.0


@dataclass
class _Outcome:
    """What one step in the worker thread gives back to the loop."""

    opened: list[tuple[Job, Decoding]] = field(default_factory=list)
    refused: list[tuple[Job, Exception]] = field(default_factory=list)
    error: Exception | None = None
    outputs: dict[Decoding, ModelOutput | Exception] = field(default_factory=dict)
    compute_ms: float = 0.0


class ContinuousLane:
    """The decode loop of one generation lane (see the module docstring)."""

    def __init__(
        self, lane: Lane, *, device: AbstractAsyncContextManager[object], max_batch: int
    ) -> None:
        self._lane = lane
        self._generator = lane.model.generator()
        self._device = device
        self._max_batch = max_batch

    async def run(self) -> None:
        """Serve the lane until cancelled."""
        seats: list[_Seat] = []
        while True:
            seats = [s for s in seats if s.job.waiting]
            if not seats:
                await self._lane.wait_for_work()
            async with self._device:
                # Admit under the limiter: tasks that came while it was busy join now.
                seats = [s for s in seats if s.job.waiting]
                joining = self._lane.take(self._max_batch - len(seats))
                for job in joining:
                    job.start()
                joining = [job for job in joining if job.waiting]  # a start hook may fail it
                if not seats and not joining:
                    continue
                outcome = await trio.to_thread.run_sync(
                    _step, self._generator, joining, [s.decoding for s in seats]
                )
            seats = self._settle(seats, outcome)

    def _settle(self, seats: list[_Seat], outcome: _Outcome) -> list[_Seat]:
        """Deliver one step's tokens and results; the seats still running."""
        model = self._lane.model
        for job, exc in outcome.refused:
            job.fail(_as_mesh_error(model.name, exc))
        stepped = seats + [_Seat(job, decoding) for job, decoding in outcome.opened]
        if outcome.error is not None:
            log.error(
                "%s failed on a step of %d: %r",
                model.name,
                len(stepped),
                outcome.error,
                exc_info=outcome.error,
            )
            for seat in stepped:
                seat.job.fail(_as_mesh_error(model.name, outcome.error))
            return []
        for seat in stepped:
            seat.batch_size = max(seat.batch_size, len(stepped))
            seat.compute_ms += outcome.compute_ms
            seat.job.emit([seat.decoding.tokens[-1]])
            if not seat.decoding.finished:
                continue
            out = outcome.outputs[seat.decoding]
            if isinstance(out, Exception):
                log.error("%s failed on a task's outputs: %r", model.name, out, exc_info=out)
                seat.job.fail(_as_mesh_error(model.name, out))
                continue
            seat.job.finish(
                Execution(
                    out.outputs,
                    model.runtime_claim(seat.batch_size),
                    out.commitment,
                    seat.batch_size,
                    seat.compute_ms,
                )
            )
        return [s for s in stepped if not s.decoding.finished]


def _step(generator: Generator, joining: list[Job], running: list[Decoding]) -> _Outcome:
    """Open the newcomers, run one step for all, build the finished ones' outputs."""
    apply_thread_count()
    start = time.perf_counter()
    outcome = _Outcome()
    for job in joining:
        try:
            outcome.opened.append((job, generator.open(job.inputs, job.params)))
        except Exception as exc:  # one task's bad input or tokenizer failure is its own
            outcome.refused.append((job, exc))
    batch = running + [decoding for _, decoding in outcome.opened]
    if not batch:
        return outcome
    try:
        generator.step(batch)
    except Exception as exc:  # a model's failure must fail its tasks, not the node
        outcome.error = exc
        return outcome
    for decoding in batch:
        if decoding.finished:
            try:
                outcome.outputs[decoding] = generator.output(decoding)
            except Exception as exc:  # e.g. a tokenizer that cannot decode this output
                outcome.outputs[decoding] = exc
    outcome.compute_ms = (time.perf_counter() - start) * 1000.0
    return outcome


def _as_mesh_error(model_name: str, exc: Exception) -> MeshError:
    """A typed error for a task: MeshErrors pass through, anything else is internal."""
    if isinstance(exc, MeshError):
        return exc
    return InternalError(f"{model_name} failed running this task: {type(exc).__name__}")
