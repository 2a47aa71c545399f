"""Verification modes for batched tasks: a batch is audited or replicated as a whole.

The modes mean what they mean for one task (:mod:`mesh.client.verification`),
with the batch as the unit of work:

- ``signature``: the batch's receipt, checked over every item (nothing more);
- ``audit``: the draw is made once per batch (on its receipt, at the worker's
  audit rate); a drawn batch is re-run as a whole on an independent worker and
  compared item by item;
- ``redundant``: ``replicas`` independent workers run the whole batch; items are
  compared across them.

Every item on which all the runs agree (within the manifest's tolerance) is
confirmed, and each agreeing worker is confirmed in the reputation table. An
item on which they disagree is settled alone by the one-task verifier
(``Verifier.run`` in ``redundant`` mode: more independent workers, majorities,
verdicts with evidence against whoever it finds wrong), and the caller gets
that settled result for it. A batch worker whose item disagrees with the settled
result is convicted in this client's reputation table (its traffic stops); a
signed verdict needs evidence of one task and its outputs, which a batch item
is not yet, so none is made against it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import trio

from mesh.client.audit import AuditDraw
from mesh.client.compare import compare_results, profile_for
from mesh.client.discovery import Discovery
from mesh.client.independence import independence_rank
from mesh.client.reputation import Reputation
from mesh.client.results import BatchRun, RunResult, Verification
from mesh.client.sender import Inputs, TaskSender
from mesh.client.verification import Verifier, VerifyOptions
from mesh.core.batch import ItemProof, item_proofs
from mesh.core.envelope import Signed
from mesh.core.messages import Task
from mesh.errors import MeshError, NoPeersAvailable

logger = logging.getLogger(__name__)

# Disputed items settled at once, each with ``replicas`` requests of its own: a
# batch whose every item a liar got wrong must not open dozens of streams to
# the same honest workers (a node holds 16 per peer, mesh.net.inbound).
SETTLING_AT_ONCE = 2

# Signs the batched task afresh (a new nonce) for the given verification mode.
SignBatch = Callable[[str], Signed[Task]]


class BatchVerifier:
    """Runs one batched task in a verification mode (see the module docstring)."""

    def __init__(
        self,
        *,
        sender: TaskSender,
        verifier: Verifier,
        discovery: Discovery,
        reputation: Reputation,
        draw: AuditDraw,
        zoo_dirs: tuple[Path, ...] = (),
    ) -> None:
        self._sender = sender
        self._verifier = verifier
        self._discovery = discovery
        self._reputation = reputation
        self._draw = draw
        self._zoo_dirs = zoo_dirs

    async def run(
        self,
        root: bytes,
        items: Sequence[Inputs],
        params: Mapping[str, int],
        *,
        encoded: Sequence[bytes],
        input_hashes: Sequence[bytes],
        sign: SignBatch,
        options: VerifyOptions,
        deadline: float,
        window_s: float,
    ) -> list[RunResult]:
        """Each item's result, verified as ``options.mode`` says.

        Args:
            root: the model.
            items: each item's inputs.
            params: the batch's integer params (without ``batch_items``).
            encoded: the items' canonical bytes; input_hashes: their hashes.
            sign: signs the batched task afresh for a mode.
            options: the verification settings.
            deadline: the batch's deadline.
            window_s: the validity window of the tasks signed for settling items.
        """
        job = _BatchJob(items, encoded, input_hashes, sign, options, deadline)
        if options.mode == "redundant":
            runs = await self._replicas(job)
            return await self._settle(root, params, runs, job, window_s)
        first = await self._fetch(job)
        if options.mode == "signature":
            return job.results(first, Verification("signature"))
        rate = self._reputation.audit_rate(first.worker, options.audit_rate)
        if not self._draw.audit(first.receipt.digest, rate):
            return job.results(first, Verification("audit"))
        try:
            second = await self._fetch(job, avoid={first.worker})
        except NoPeersAvailable:
            note = "audit drawn but not done: no independent worker serves this model"
            logger.warning("%s (worker %s)", note, first.worker)
            return job.results(first, Verification("audit", note=note))
        return await self._settle(root, params, [first, second], job, window_s)

    async def _fetch(
        self,
        job: _BatchJob,
        *,
        avoid: set[str] | None = None,
        on_attempt: Callable[[str], None] | None = None,
    ) -> BatchRun:
        rank = (
            None
            if avoid is None
            else independence_rank(
                avoid, record_of=self._discovery.record, reputation=self._reputation
            )
        )
        return await self._sender.send_batch(
            job.sign(job.options.mode),
            job.items,
            deadline=job.deadline,
            encoded=job.encoded,
            exclude=() if avoid is None else avoid,  # the live set: read at each choice
            rank=rank,
            on_attempt=on_attempt,
        )

    async def _replicas(self, job: _BatchJob) -> list[BatchRun]:
        claimed: set[str] = set()
        found: list[BatchRun | None] = [None] * job.options.replicas
        errors: list[MeshError] = []

        async def one(index: int) -> None:
            try:
                found[index] = await self._fetch(job, avoid=claimed, on_attempt=claimed.add)
            except MeshError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for index in range(job.options.replicas):
                nursery.start_soon(one, index)
        runs = [r for r in found if r is not None]
        if len(runs) >= 2:
            return runs
        hard = [e for e in errors if not isinstance(e, NoPeersAvailable)]
        if hard:
            raise hard[0]
        raise NoPeersAvailable(
            f"redundant verification needs 2 independent workers; {len(runs)} answered"
        )

    async def _settle(
        self,
        root: bytes,
        params: Mapping[str, int],
        runs: list[BatchRun],
        job: _BatchJob,
        window_s: float,
    ) -> list[RunResult]:
        items, options = job.items, job.options
        profile = profile_for(root, self._zoo_dirs)
        first, others = runs[0], runs[1:]
        proofs = job.proofs(first)
        results: list[RunResult | None] = [None] * len(items)
        disputed: list[int] = []
        for index in range(len(items)):
            mine = (first.outputs[index], first.receipt.message.runtime)
            if all(
                compare_results(profile, mine, (o.outputs[index], o.receipt.message.runtime)).agree
                for o in others
            ):
                report = Verification(
                    options.mode,
                    checked=True,
                    confirmed_by=tuple(o.worker for o in others),
                    extra_runs=len(others),
                )
                results[index] = job.item(first, proofs, index, report)
            else:
                disputed.append(index)
        if not disputed:
            for run in runs:
                self._reputation.confirm(run.worker)
        settle = VerifyOptions("redundant", options.audit_rate, options.replicas)
        limiter = trio.CapacityLimiter(SETTLING_AT_ONCE)
        errors: list[MeshError] = []

        async def one(index: int) -> None:
            async with limiter:
                try:
                    settled = await self._verifier.run(
                        root,
                        items[index],
                        params,
                        options=settle,
                        deadline=job.deadline,
                        window_s=window_s,
                    )
                except MeshError as exc:
                    errors.append(exc)
                    return
            results[index] = settled
            for run in runs:
                verdict = compare_results(
                    profile,
                    (run.outputs[index], run.receipt.message.runtime),
                    (settled.outputs, settled.receipt.message.runtime),
                )
                if not verdict.agree:
                    self._reputation.convict(
                        run.worker, f"batch item {index} disagreed with its settled result"
                    )

        async with trio.open_nursery() as nursery:
            for index in disputed:
                nursery.start_soon(one, index)
        if errors:
            raise errors[0]  # the batch fails as a whole (map: each item in its place)
        done = [r for r in results if r is not None]
        assert len(done) == len(items)  # every item confirmed or settled (or raised)
        return done


class _BatchJob:
    """One batch while it is being verified: its items and how to sign it."""

    def __init__(
        self,
        items: Sequence[Inputs],
        encoded: Sequence[bytes],
        input_hashes: Sequence[bytes],
        sign: SignBatch,
        options: VerifyOptions,
        deadline: float,
    ) -> None:
        self.items = items
        self.encoded = encoded
        self.input_hashes = input_hashes
        self.sign = sign
        self.options = options
        self.deadline = deadline

    def proofs(self, run: BatchRun) -> list[ItemProof]:
        return item_proofs(self.input_hashes, run.output_hashes)

    def item(
        self, run: BatchRun, proofs: Sequence[ItemProof], index: int, report: Verification
    ) -> RunResult:
        return RunResult(
            run.outputs[index],
            run.receipt,
            run.task,
            run.worker,
            run.latency_ms,
            run.attempts,
            verification=report,
            proof=proofs[index],
            inputs=self.items[index],
        )

    def results(self, run: BatchRun, report: Verification) -> list[RunResult]:
        proofs = self.proofs(run)
        return [self.item(run, proofs, i, report) for i in range(len(self.items))]
