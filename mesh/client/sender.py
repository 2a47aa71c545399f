"""Sending one signed task until a verified result comes back, within a deadline.

The decisions (which peer next, whether to retry, which error to raise) are
:class:`~mesh.client.plan.TaskPlan`'s; :class:`TaskSender` carries them out: it
discovers candidates, sends, verifies each answer (:func:`check_response`) and
tells the health list, the reputation and the discovery cache what each failed
attempt taught it (the table in :mod:`mesh.client.retry`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol, TypeVar

import trio

from mesh.client.discovery import Candidate, Discovery, dial_addr
from mesh.client.plan import GiveUp, Rediscover, TaskPlan, Wait
from mesh.client.reputation import Reputation
from mesh.client.results import BatchRun, RunResult
from mesh.client.retry import Failure, RetryPolicy
from mesh.client.selection import Load, PeerBook
from mesh.client.verify import check_batch_response, check_response
from mesh.core.batch import BatchResult, encode_batch_request
from mesh.core.envelope import Signed
from mesh.core.messages import Receipt, Task, encode_request
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import DeadlineExceeded, MeshError, UnknownModel
from mesh.net.interface import TASK_PROTOCOL, Network, OnPartial, PeerAddr

logger = logging.getLogger(__name__)

Inputs = Mapping[str, Tensor | Sequence[str]]
R = TypeVar("R")
# The partial-answer callback of one attempt on a peer (streaming), or None.
PartialsFor = Callable[[str], OnPartial | None]
_REDISCOVER_S = 0.25  # first wait before asking the DHT again when nobody serves yet
# Orders candidate peers for one send (lower first); only the lowest rank is chosen from.
Rank = Callable[[str], int]


class StreamTap(Protocol):
    """Hears a streamed task's partial answers, attempt by attempt (mesh.client.streaming)."""

    def attempt(self, peer: str, task: Signed[Task]) -> OnPartial:
        """The partial-answer callback of a new attempt of ``task`` on ``peer``."""
        ...

    def finish(self, outputs: Values, receipt: Signed[Receipt]) -> None:
        """Check the attempt's verified result against its partials (VerificationError)."""
        ...


class TaskSender:
    """Sends signed tasks to the best live peers and returns verified results.

    Args:
        network: the running network.
        discovery: providers and capacity records.
        book: latency and in-flight counts per peer (scored with the health list).
        reputation: workers caught answering wrongly (left out).
        retry: attempt bounds.
        discovery_timeout_s: deadline of one provider search.
        rng: randomness for choosing among near-equal peers.
    """

    def __init__(
        self,
        *,
        network: Network,
        discovery: Discovery,
        book: PeerBook,
        reputation: Reputation,
        retry: RetryPolicy,
        discovery_timeout_s: float,
        rng: random.Random,
    ) -> None:
        self._network = network
        self._discovery = discovery
        self._book = book
        self._reputation = reputation
        self._retry = retry
        self._discovery_timeout_s = discovery_timeout_s
        self._rng = rng

    async def send(
        self,
        task: Signed[Task],
        inputs: Inputs,
        *,
        deadline: float,
        target: str | None = None,
        exclude: Collection[str] = (),
        rank: Rank | None = None,
        on_attempt: Callable[[str], None] | None = None,
        stream: StreamTap | None = None,
    ) -> RunResult:
        """Send ``task`` until a verified result comes back or ``deadline`` passes.

        ``exclude`` names peers never to send it to (read at each choice, so a
        live set works); ``rank`` (lower first) keeps only the best-ranked untried
        peers in the choice; ``on_attempt`` hears each peer chosen, before the
        send. The verification layer uses them to reach independent workers.

        With ``stream``, the request asks for partial answers and each attempt's
        go to ``stream``, which also checks them against the attempt's result.

        Raises:
            VerificationError: only unverifiable answers came back.
            DeadlineExceeded: no verified answer within the deadline (also when no
                provider was found in time).
            NoPeersAvailable: before the deadline, every provider found was left out
                or failed without an error worth raising.
            ProtocolError: the task itself was refused (another peer would say the
                same); ``InvalidInput`` once ``refusal_quorum`` workers refused it.
        """

        def check(response: bytes, worker: str) -> tuple[Values, Signed[Receipt]]:
            outputs, receipt = check_response(response, task=task, worker=worker)
            if stream is not None:
                stream.finish(outputs, receipt)
            return outputs, receipt

        def partials(peer: str) -> OnPartial | None:
            return None if stream is None else stream.attempt(peer, task)

        request = encode_request(task, inputs, stream=stream is not None)
        sent = await self._send(
            task,
            request,
            check,
            deadline=deadline,
            target=target,
            exclude=exclude,
            rank=rank,
            on_attempt=on_attempt,
            partials=partials,
        )
        (outputs, receipt), peer, latency_ms, attempts = sent
        return RunResult(outputs, receipt, task, peer, latency_ms, attempts)

    async def send_batch(
        self,
        task: Signed[Task],
        items: Sequence[Inputs],
        *,
        deadline: float,
        target: str | None = None,
        encoded: Sequence[bytes] | None = None,
        exclude: Collection[str] = (),
        rank: Rank | None = None,
        on_attempt: Callable[[str], None] | None = None,
    ) -> BatchRun:
        """Send a batched task (:mod:`mesh.core.batch`) like :meth:`send`: one receipt back.

        ``encoded``: the items' canonical bytes when already at hand (they were
        hashed for the task's ``input_hash``), so they are not encoded twice.
        A batch never streams.

        Raises:
            the same as :meth:`send`.
        """

        def check(response: bytes, worker: str) -> tuple[BatchResult, Signed[Receipt]]:
            return check_batch_response(response, task=task, worker=worker)

        request = encode_batch_request(task, items, encoded=encoded)
        sent = await self._send(
            task,
            request,
            check,
            deadline=deadline,
            target=target,
            exclude=exclude,
            rank=rank,
            on_attempt=on_attempt,
            partials=lambda _peer: None,
        )
        (result, receipt), peer, latency_ms, attempts = sent
        return BatchRun(
            result.outputs, result.output_hashes, receipt, task, peer, latency_ms, attempts
        )

    async def _send(
        self,
        task: Signed[Task],
        request: bytes,
        check: Callable[[bytes, str], R],
        *,
        deadline: float,
        target: str | None,
        exclude: Collection[str],
        rank: Rank | None,
        on_attempt: Callable[[str], None] | None,
        partials: PartialsFor,
    ) -> tuple[R, str, float, int]:
        """The retry loop: (checked answer, worker, latency in ms, attempts)."""
        root = task.message.model_root
        found = await self._discover(root, deadline=deadline, target=target)
        by_id = {c.peer.peer_id: c for c in found}
        plan = TaskPlan(deadline=deadline, policy=self._retry, peers=by_id, what=root.hex()[:16])

        def pick(untried: frozenset[str]) -> str | None:
            allowed = [
                pid
                for pid in sorted(untried)
                if not self._reputation.excluded(pid) and pid not in exclude
            ]
            if rank is not None and allowed:
                best = min(rank(pid) for pid in allowed)
                allowed = [pid for pid in allowed if rank(pid) == best]
            choices = [(pid, self._load(by_id[pid])) for pid in allowed]
            return self._book.choose(choices, rng=self._rng)

        while True:
            step = plan.next_step(trio.current_time(), pick)
            if isinstance(step, GiveUp):
                raise step.error
            if isinstance(step, Wait):
                await trio.sleep_until(step.until)
            elif isinstance(step, Rediscover):
                timeout = min(deadline - trio.current_time(), self._discovery_timeout_s)
                fresh = await self._discovery.candidates(root, timeout=timeout, fresh=True)
                new = {
                    c.peer.peer_id: c
                    for c in fresh
                    if c.peer.peer_id not in by_id and target in (None, c.peer.peer_id)
                }
                by_id.update(new)
                plan.add_peers(new)
            else:
                if on_attempt is not None:
                    on_attempt(step.peer)
                try:
                    checked, latency_ms = await self._attempt(
                        by_id[step.peer].peer, request, check, step.timeout, partials(step.peer)
                    )
                except MeshError as exc:
                    kind = plan.failed(step.peer, exc, now=trio.current_time())
                    self._learn(step.peer, root, kind, exc)
                    continue
                self._blame_refusers(plan.refused, step.peer)
                return checked, step.peer, latency_ms, plan.attempts

    def _blame_refusers(self, refusers: Sequence[str], worker: str) -> None:
        """Workers that refused a task another worker just ran: their fault (retry table)."""
        for peer in refusers:
            logger.info("%s refused as invalid a task %s ran: counted against it", peer, worker)
            self._network.mark_unhealthy(peer)

    def _learn(self, peer: str, root: bytes, kind: Failure, exc: MeshError) -> None:
        """What a failed attempt teaches this client about ``peer`` (see mesh.client.retry)."""
        if kind is Failure.WORKER_FAULT:
            self._network.mark_unhealthy(peer)
        elif kind is Failure.LIED:
            self._reputation.convict(peer, str(exc))
        elif kind is Failure.NOT_HERE and isinstance(exc, UnknownModel):
            self._discovery.forget_provider(root, peer)
        if kind.retryable:
            logger.info("attempt on %s failed (%s): %s; trying another peer", peer, kind.value, exc)

    async def _discover(
        self, root: bytes, *, deadline: float, target: str | None, fresh: bool = False
    ) -> list[Candidate]:
        wait = _REDISCOVER_S
        while True:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                raise _no_provider_in_time(root)
            timeout = min(remaining, self._discovery_timeout_s)
            candidates = await self._discovery.candidates(root, timeout=timeout, fresh=fresh)
            fresh = True  # a retry of discovery must not read the (empty) cache
            if target is not None:
                record = self._discovery.record(target)
                peer = PeerAddr(target) if record is None else dial_addr(target, record)
                candidates = [c for c in candidates if c.peer.peer_id == target] or [
                    Candidate(peer, record)
                ]
            if candidates:
                return candidates
            # Provider records can lag a node's start: ask again, backing off,
            # until the caller's deadline (then it is a deadline error, not "nobody").
            await trio.sleep(max(0.0, min(wait, deadline - trio.current_time())))
            wait = min(wait * 2, 2.0)

    def _load(self, candidate: Candidate) -> Load | None:
        record = self._discovery.record(candidate.peer.peer_id) or candidate.record
        return Candidate(candidate.peer, record).load

    async def _attempt(
        self,
        peer: PeerAddr,
        request: bytes,
        check: Callable[[bytes, str], R],
        timeout: float,  # noqa: ASYNC109
        on_partial: OnPartial | None = None,
    ) -> tuple[R, float]:
        self._book.started(peer.peer_id)
        try:
            # The dial is timed apart: a first task to a peer not yet connected
            # would otherwise rate it a handshake slower than the peers already
            # connected (the bootstrap peers), and selection would never go back.
            dialled = trio.current_time()
            if peer.peer_id not in self._network.connected_peers():
                await self._network.connect(peer, timeout=timeout)
            started = trio.current_time()
            response = await self._network.request(
                peer,
                TASK_PROTOCOL,
                request,
                timeout=max(0.0, timeout - (started - dialled)),
                on_partial=on_partial,
            )
        finally:
            self._book.finished(peer.peer_id)
        latency_ms = (trio.current_time() - started) * 1000
        checked = check(response, peer.peer_id)
        self._book.success(peer.peer_id, latency_ms)
        return checked, latency_ms


def _no_provider_in_time(root: bytes) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"no provider of model {root.hex()[:16]} found within the deadline"
        " (none announced it, or none answered)"
    )
