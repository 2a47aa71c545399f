"""The record exchange over any :class:`~mesh.net.interface.Network`: serve a book, ask peers.

:class:`RecordExchange` is what nodes and clients share: it answers
``/mesh/records/1.0.0`` from the peer's :class:`~mesh.core.record_book.RecordBook`
(see :mod:`mesh.core.exchange` for the messages), asks other peers for theirs,
and takes load gossip (``LOAD_TOPIC``) into the same book. Whatever the source,
a record enters the book only through ``RecordBook.accept``.

A peer that hands out a forged record, or another kind of envelope dressed as
a record, or an answer that does not decode, is counted against in the
network's health list (``mark_unhealthy``): it is avoided for a growing
backoff, like a peer that failed a task. An expired record is dropped without
blame (it may have expired on its way here).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from mesh.aio.clock import WallClock
from mesh.core.envelope import Signed
from mesh.core.exchange import MAX_ANSWER_RECORDS, RecordsAnswer, RecordsQuery, select_records
from mesh.core.messages import CapacityRecord
from mesh.core.record_book import RecordBook
from mesh.errors import Expired, MeshError, PeerUnavailable
from mesh.net.interface import LOAD_TOPIC, RECORDS_PROTOCOL, Inbound, Network, PeerAddr

logger = logging.getLogger(__name__)


@dataclass
class ExchangeStats:
    """Counters of one peer's exchange traffic (benchmarks and the simulation read them)."""

    queries_answered: int = 0
    bytes_answered: int = 0
    queries_sent: int = 0
    bytes_received: int = 0
    records_accepted: int = 0
    records_rejected: int = 0
    gossip_accepted: int = 0
    gossip_rejected: int = 0
    pushes_accepted: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """What one peer handed out, after checking."""

    peer_id: str
    records: list[Signed[CapacityRecord]] = field(default_factory=list)
    rejected: int = 0
    error: MeshError | None = None


class RecordExchange:
    """Serves this peer's record book and fills it from other peers.

    Args:
        network: the running network.
        book: this peer's records (shared with whoever reads them).
        wall_clock: epoch milliseconds (record expiry).
        rng: picks samples of big answers.
    """

    def __init__(
        self,
        network: Network,
        book: RecordBook,
        *,
        wall_clock: WallClock,
        rng: random.Random | None = None,
    ) -> None:
        self._network = network
        self.book = book
        self._now_ms = wall_clock
        self._rng = rng or random.Random()
        self.stats = ExchangeStats()

    # -- serving -------------------------------------------------------------------

    def serve(self) -> None:
        """Answer ``/mesh/records/1.0.0`` on this peer's network."""
        self._network.set_request_handler(RECORDS_PROTOCOL, self.handle)

    async def handle(self, inbound: Inbound) -> bytes:
        """Answer one query from the book; keep the asker's own record if it sent one.

        Raises:
            MalformedMessage, TooLarge: not a query (the stream is closed unanswered).
        """
        query = RecordsQuery.decode(inbound.message)
        if query.own:
            try:
                # Only the asker's own record: a peer may not push others' records
                # here (they are valid, but that would make us an amplifier).
                self.book.accept(query.own, now_ms=self._now_ms(), peer_id=inbound.peer_id)
                self.stats.pushes_accepted += 1
            except MeshError as exc:
                logger.info("record pushed by %s dropped: %s", inbound.peer_id, exc)
                self.stats.records_rejected += 1
        answer = select_records(
            self.book, query, now_ms=self._now_ms(), rng=self._rng, exclude=inbound.peer_id
        ).encode()
        self.stats.queries_answered += 1
        self.stats.bytes_answered += len(answer)
        await trio.lowlevel.checkpoint()
        return answer

    # -- asking --------------------------------------------------------------------

    async def ask(
        self,
        peer: PeerAddr,
        *,
        models: Sequence[bytes] = (),
        limit: int = MAX_ANSWER_RECORDS,
        own: Signed[CapacityRecord] | None = None,
        timeout: float,  # noqa: ASYNC109 (every network wait has a deadline)
    ) -> Answer:
        """Ask ``peer`` for its live records (of ``models``; any when empty); keep the valid ones.

        Never raises for the peer's faults: they come back in ``Answer.error``
        (and a peer that sent garbage is marked unhealthy).
        """
        query = RecordsQuery(
            models=tuple(models), limit=limit, own=b"" if own is None else own.envelope
        )
        self.stats.queries_sent += 1
        try:
            data = await self._network.request(
                peer, RECORDS_PROTOCOL, query.encode(), timeout=timeout
            )
        except MeshError as exc:
            logger.debug("records from %s: no answer (%s)", peer.peer_id, exc)
            return Answer(peer.peer_id, error=exc)
        self.stats.bytes_received += len(data)
        try:
            answer = RecordsAnswer.decode(data)
        except MeshError as exc:
            logger.info("records answer from %s is garbage: %s", peer.peer_id, exc)
            self._network.mark_unhealthy(peer.peer_id)
            return Answer(peer.peer_id, error=PeerUnavailable(f"garbage answer: {exc}"))
        accepted: list[Signed[CapacityRecord]] = []
        rejected = 0
        blame: MeshError | None = None
        now_ms = self._now_ms()
        for envelope in answer.records:
            try:
                accepted.append(self.book.accept(envelope, now_ms=now_ms))
            except Expired:
                rejected += 1  # it may have run out on its way here: no blame
            except MeshError as exc:
                rejected += 1
                blame = exc
        self.stats.records_accepted += len(accepted)
        self.stats.records_rejected += rejected
        if blame is not None:
            logger.info(
                "%s handed out %d bad record(s) (%s): counted against it",
                peer.peer_id,
                rejected,
                blame,
            )
            self._network.mark_unhealthy(peer.peer_id)
        return Answer(peer.peer_id, accepted, rejected, blame)

    async def ask_many(
        self,
        peers: Sequence[PeerAddr],
        *,
        models: Sequence[bytes] = (),
        limit: int = MAX_ANSWER_RECORDS,
        own: Signed[CapacityRecord] | None = None,
        timeout: float,  # noqa: ASYNC109
        enough: Callable[[list[Answer]], bool] | None = None,
        background: trio.Nursery | None = None,
    ) -> list[Answer]:
        """Ask every peer in ``peers`` at once; return their answers (up to ``timeout``).

        Args:
            peers: whom to ask.
            models, limit, own: as for :meth:`ask`.
            timeout: the deadline of the whole round.
            enough: called after each answer with those so far; True returns at
                once. The questions still out go on in ``background`` (their
                records still reach the book) when one is given, else are cancelled.
            background: a nursery that outlives this call.
        """
        if not peers:
            return []
        send, receive = trio.open_memory_channel[Answer](len(peers))
        deadline = trio.current_time() + timeout

        async def one(peer: PeerAddr) -> None:
            with trio.move_on_at(deadline):
                answer = await self.ask(peer, models=models, limit=limit, own=own, timeout=timeout)
                send.send_nowait(answer)  # room for every answer: never blocks

        answers: list[Answer] = []
        async with trio.open_nursery() as local:
            spawner = background if background is not None and enough is not None else local
            for peer in peers:
                spawner.start_soon(one, peer)
            with trio.move_on_at(deadline):
                while len(answers) < len(peers):
                    answers.append(await receive.receive())
                    if enough is not None and enough(answers):
                        break
            local.cancel_scope.cancel()
        return answers

    # -- gossip --------------------------------------------------------------------

    async def watch_gossip(self) -> None:
        """Take records gossiped on ``LOAD_TOPIC`` into the book, until cancelled."""
        try:
            channel = await self._network.subscribe(LOAD_TOPIC)
        except MeshError as exc:
            # Gossip only keeps the view fresher; exchange and DHT still work.
            logger.warning("no load gossip: %s", exc)
            return
        async with channel:
            async for _sender, data in channel:
                self.accept_gossip(data)

    def accept_gossip(self, data: bytes) -> Signed[CapacityRecord] | None:
        """Check one gossiped record (relayed: it counts for whoever signed it)."""
        try:
            signed = self.book.accept(data, now_ms=self._now_ms())
        except MeshError as exc:
            self.stats.gossip_rejected += 1
            logger.info("gossiped capacity record rejected: %s", exc)
            return None
        self.stats.gossip_accepted += 1
        return signed
