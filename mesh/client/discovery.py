"""Discovery: who serves a model, from signed capacity records, in as few round trips as possible.

Where records come from (every one checked the same way, by the one
:class:`~mesh.core.record_book.RecordBook`):

1. the book itself: records learnt earlier and kept fresh by load gossip
   (``LOAD_TOPIC``). A task never waits on the network while the book holds a
   live record of a healthy peer serving its model;
2. the record exchange (:mod:`mesh.net.exchange`): one round trip to the
   bootstrap peers, who hand out the live records they hold. A cold client can
   choose a worker after the first useful answer; the others still arrive;
3. the DHT, for what the exchange misses (a mesh too big for one answer, peers
   the bootstrap peers have not heard of): ``find_providers`` under a deadline,
   then at most ``MAX_RECORD_FETCHES`` capacity records per lookup.

Only peers with a valid signed capacity record are ever candidates. A provider
record costs nothing to forge (any number of fresh PeerIDs can announce a model
and point at a black hole), so a provider whose record cannot be found is
remembered as record-less for ``RECORDLESS_RETRY_S`` and not fetched again on
every task.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from mesh.aio.clock import WallClock
from mesh.client.selection import Load
from mesh.core.capacity import capacity_key
from mesh.core.envelope import Signed
from mesh.core.exchange import MAX_ANSWER_RECORDS
from mesh.core.identity import peer_id_from_public_key
from mesh.core.messages import CapacityRecord
from mesh.core.record_book import RecordBook
from mesh.errors import MeshError
from mesh.net.exchange import Answer, RecordExchange
from mesh.net.interface import Network, PeerAddr

logger = logging.getLogger(__name__)

MAX_PROVIDERS = 20
# Capacity records fetched from the DHT per lookup, at most. Each is a DHT walk;
# fetching every candidate's record made a cold lookup grow with the mesh
# (1.2 s on 10 nodes, 5 s on 20, measured).
MAX_RECORD_FETCHES = 4
# How long a DHT provider list is reused before asking the DHT again.
PROVIDER_CACHE_S = 30.0
# A provider whose record lookup found none (or none valid) is not looked up
# again for this long: with Sybil providers, re-fetching on every task cost
# seconds per task (issue 10). A lookup that failed (no answer in time) proves
# nothing and is retried after UNKNOWN_RETRY_S.
RECORDLESS_RETRY_S = 60.0
UNKNOWN_RETRY_S = 10.0
# How a record lookup ended.
_FOUND, _ABSENT, _FAILED = "found", "absent", "failed"
# Peers asked in one exchange round when there are no bootstrap peers to ask
# (each holds a sample of the mesh, so several are heard, all of them).
EXCHANGE_FANOUT = 16
# A long-lived client asks its bootstrap peers again, in the background, when
# its last exchange is older than this (gossip keeps records fresh meanwhile;
# this catches peers whose gossip does not reach us).
EXCHANGE_REFRESH_S = 30.0
# mesh peers: first pause between survey rounds whose answers disagree.
SURVEY_RETRY_S = 0.2


@dataclass(frozen=True, slots=True)
class Candidate:
    """A peer that may serve a model, with its verified capacity record if known."""

    peer: PeerAddr
    record: CapacityRecord | None

    @property
    def load(self) -> Load | None:
        if self.record is None:
            return None
        return Load(self.record.queue_depth, self.record.queue_capacity)


@dataclass(frozen=True, slots=True)
class Survey:
    """The mesh as the bootstrap peers describe it (``mesh peers``).

    Attributes:
        records: every live record known after the survey, by peer id.
        complete: every peer asked answered, and all of them hold the same set
            of peers: the view is consistent.
        asked: how many peers were asked.
        answered: how many answered in the last round.
        note: why the view is partial ("" when complete).
    """

    records: dict[str, CapacityRecord]
    complete: bool
    asked: int
    answered: int
    note: str = ""


@dataclass
class DiscoveryStats:
    """What discovery cost (benchmarks and tests read these)."""

    from_book: int = 0  # lookups answered from the book, no network
    exchange_rounds: int = 0
    dht_lookups: int = 0
    record_fetches: int = 0


def candidate_of(signed: Signed[CapacityRecord], peer_id: str) -> Candidate:
    """A candidate dialled on the addresses its own signed record names."""
    return Candidate(dial_addr(peer_id, signed.message), signed.message)


def dial_addr(peer_id: str, record: CapacityRecord) -> PeerAddr:
    """Where to dial ``peer_id``: the transport addresses its signed record names."""
    return PeerAddr(peer_id, tuple(dict.fromkeys(a.split("/p2p/", 1)[0] for a in record.addrs)))


class Discovery:
    """Finds workers for a model and keeps this client's book of capacity records."""

    def __init__(
        self,
        network: Network,
        *,
        wall_clock: WallClock,
        book: RecordBook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._network = network
        self._now_ms = wall_clock
        self._rng = rng or random.Random()
        self.book = book if book is not None else RecordBook()
        self.exchange = RecordExchange(network, self.book, wall_clock=wall_clock, rng=self._rng)
        self._providers: dict[bytes, tuple[float, list[PeerAddr]]] = {}
        self._recordless: dict[str, float] = {}  # peer id -> trio time of the next try
        self._candidates: dict[str, tuple[Signed[CapacityRecord], Candidate]] = {}
        self._last_exchange: float | None = None
        self._refreshing = False
        self._background: trio.Nursery | None = None
        self.stats = DiscoveryStats()
        self._dht_rejected = 0

    @property
    def rejected(self) -> int:
        """Records dropped because they did not check, whatever their source."""
        ex = self.exchange.stats
        return self._dht_rejected + ex.gossip_rejected + ex.records_rejected

    def start(self, nursery: trio.Nursery) -> None:
        """Serve this peer's records, take gossip, run background refreshes in ``nursery``."""
        self._background = nursery
        self.exchange.serve()
        nursery.start_soon(self.exchange.watch_gossip)

    # -- the book ------------------------------------------------------------------

    def record(self, peer_id: str) -> CapacityRecord | None:
        """The held record of ``peer_id`` if still live."""
        signed = self.book.get(peer_id, now_ms=self._now_ms())
        return None if signed is None else signed.message

    def accept(self, peer_id: str | None, data: bytes) -> CapacityRecord | None:
        """Check a capacity record (from the DHT when ``peer_id`` is given); None if bad."""
        try:
            signed = self.book.accept(data, now_ms=self._now_ms(), peer_id=peer_id)
        except MeshError as exc:
            self._dht_rejected += 1
            logger.info("capacity record of %s rejected: %s", peer_id or "gossip", exc)
            return None
        return signed.message

    def forget_provider(self, model_root: bytes, peer_id: str) -> None:
        """``peer_id`` said it does not serve ``model_root``: drop it from the DHT cache and
        its record (a record naming a model the peer does not serve is useless)."""
        cached = self._providers.get(model_root)
        if cached is not None:
            expiry, peers = cached
            self._providers[model_root] = (expiry, [p for p in peers if p.peer_id != peer_id])
        self.book.discard(peer_id)

    def recorded(self, model_root: bytes) -> list[Candidate]:
        """Candidates from the book alone: peers with a live record naming ``model_root``."""
        own = self._network.peer_id
        return [
            self._candidate(pid, s)
            for pid, s in self.book.live_items(now_ms=self._now_ms(), model_root=model_root)
            # A draining record says the peer is leaving (mesh.node.departure).
            if pid != own and not s.message.draining
        ]

    def _candidate(self, peer_id: str, signed: Signed[CapacityRecord]) -> Candidate:
        # Built once per record, not per lookup: a warm lookup over hundreds of
        # records then costs a dict read each (measured 0.6 -> 0.2 ms for 256).
        held = self._candidates.get(peer_id)
        if held is None or held[0] is not signed:
            held = (signed, candidate_of(signed, peer_id))
            self._candidates[peer_id] = held
            if len(self._candidates) > 2 * max(len(self.book), 64):
                live = set(self.book.peer_ids())
                self._candidates = {p: c for p, c in self._candidates.items() if p in live}
        return held[1]

    def _has_worker(self, model_root: bytes) -> bool:
        """True when the book holds a live record of a healthy peer serving ``model_root``."""
        return any(self._network.is_healthy(c.peer.peer_id) for c in self.recorded(model_root))

    # -- finding candidates ------------------------------------------------------------

    async def candidates(
        self,
        model_root: bytes,
        *,
        timeout: float,  # noqa: ASYNC109
        fresh: bool = False,
        max_fetches: int | None = MAX_RECORD_FETCHES,
    ) -> list[Candidate]:
        """Peers with a live signed record naming ``model_root`` (see the module docstring).

        Args:
            model_root: the model.
            timeout: deadline of the whole lookup.
            fresh: every known candidate failed: ask the bootstrap peers (all of
                them, waiting for each) and the DHT, whatever the book holds.
            max_fetches: DHT record fetches per lookup (None: every provider's).
        """
        deadline = trio.current_time() + timeout
        if not fresh and self._has_worker(model_root):
            self.stats.from_book += 1
            self._refresh_later(model_root)
            return self.recorded(model_root)
        await self._exchange_round(model_root, deadline=deadline, wait_all=fresh)
        if not fresh and self._has_worker(model_root):
            return self.recorded(model_root)
        await self._dht_round(model_root, deadline=deadline, fresh=fresh, max_fetches=max_fetches)
        return self.recorded(model_root)

    async def _exchange_round(self, model_root: bytes, *, deadline: float, wait_all: bool) -> None:
        targets, from_bootstrap = self._exchange_targets()
        if not targets:
            return
        # A bootstrap peer holds the mesh's records: its one answer is enough to
        # choose. Other peers hold a sample each: hear them all.
        wait_all = wait_all or not from_bootstrap
        self.stats.exchange_rounds += 1
        self._last_exchange = trio.current_time()

        def enough(_answers: list[Answer]) -> bool:
            # One answer that gives a live worker is enough to choose one; the
            # rest keep arriving in the background.
            return self._has_worker(model_root)

        await self.exchange.ask_many(
            targets,
            models=(model_root,),
            timeout=max(0.0, deadline - trio.current_time()),
            enough=None if wait_all else enough,
            background=self._background,
        )

    def _exchange_targets(self) -> tuple[list[PeerAddr], bool]:
        """Whom to ask, and whether they are bootstrap peers."""
        boot = [p for p in self._network.bootstrap_peers() if p.peer_id != self._network.peer_id]
        healthy = [p for p in boot if self._network.is_healthy(p.peer_id)]
        if healthy:
            return healthy, True
        known = [p for p in self._network.known_peers() if p.peer_id != self._network.peer_id]
        sample = self._rng.sample(known, min(EXCHANGE_FANOUT, len(known)))
        return (sample, False) if sample else (boot, True)

    def _refresh_later(self, model_root: bytes) -> None:
        """Ask the bootstrap peers again in the background when the last round is old."""
        now = trio.current_time()
        stale = self._last_exchange is None or now - self._last_exchange > EXCHANGE_REFRESH_S
        if not stale or self._refreshing or self._background is None:
            return
        self._refreshing = True
        self._last_exchange = now

        async def refresh() -> None:
            try:
                await self._exchange_round(model_root, deadline=now + 5.0, wait_all=True)
            finally:
                self._refreshing = False

        self._background.start_soon(refresh)

    async def _dht_round(
        self, model_root: bytes, *, deadline: float, fresh: bool, max_fetches: int | None
    ) -> None:
        peers = await self.dht_providers(
            model_root, timeout=max(0.0, deadline - trio.current_time()), fresh=fresh
        )
        now = trio.current_time()
        missing = [
            p.peer_id
            for p in peers
            if self.record(p.peer_id) is None and self._recordless.get(p.peer_id, 0.0) <= now
        ]
        self._rng.shuffle(missing)
        # A sample of records first (a cold lookup stays cheap); when none of them
        # gives a worker (Sybils without records crowd the provider list), twice
        # as many more, and so on, within the same deadline.
        batch = len(missing) if max_fetches is None else max_fetches
        while missing and trio.current_time() < deadline:
            sample, missing = missing[:batch], missing[batch:]
            outcomes = await self._fill_records(sample, deadline=deadline)
            now = trio.current_time()
            for peer_id in sample:
                outcome = outcomes.get(peer_id, _FAILED)  # cut by the deadline: unknown
                if outcome == _ABSENT:
                    self._recordless[peer_id] = now + RECORDLESS_RETRY_S
                elif outcome == _FAILED:
                    # No answer is no proof of having no record (a slow DHT walk,
                    # black-holed peers on the way): try again sooner.
                    self._recordless[peer_id] = now + UNKNOWN_RETRY_S
            if max_fetches is None or self._has_worker(model_root):
                break
            batch *= 2

    async def dht_providers(
        self,
        model_root: bytes,
        *,
        timeout: float,  # noqa: ASYNC109
        fresh: bool = True,
    ) -> list[PeerAddr]:
        """Peers announcing ``model_root`` in the DHT (not checked: anyone can announce)."""
        cached = self._providers.get(model_root)
        if not fresh and cached is not None and cached[0] > trio.current_time():
            return cached[1]
        self.stats.dht_lookups += 1
        try:
            peers = await self._network.find_providers(
                model_root, count=MAX_PROVIDERS, timeout=timeout
            )
        except MeshError as exc:
            logger.info("find_providers failed: %s", exc)
            return []
        peers = [p for p in peers if p.peer_id != self._network.peer_id]
        if peers:
            self._providers[model_root] = (trio.current_time() + PROVIDER_CACHE_S, peers)
        return peers

    async def fetch_record(self, peer_id: str, *, timeout: float) -> CapacityRecord | None:  # noqa: ASYNC109
        """Get ``peer_id``'s record from the DHT (validated), or None."""
        record, _ = await self._lookup(peer_id, timeout=timeout)
        return record

    async def _lookup(
        self,
        peer_id: str,
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> tuple[CapacityRecord | None, str]:
        """The record and how the lookup ended: found, absent (none, or none valid), failed."""
        self.stats.record_fetches += 1
        try:
            data = await self._network.get_record(capacity_key(peer_id), timeout=timeout)
        except MeshError as exc:
            logger.debug("no capacity record for %s: %s", peer_id, exc)
            return None, _FAILED
        record = None if data is None else self.accept(peer_id, data)
        return record, _ABSENT if record is None else _FOUND

    async def _fill_records(self, peer_ids: Sequence[str], *, deadline: float) -> dict[str, str]:
        """Look up records at once until ``deadline``; how each lookup ended (those cut
        by the deadline are missing)."""
        outcomes: dict[str, str] = {}
        if not peer_ids:
            return outcomes

        async def one(pid: str) -> None:
            _, outcomes[pid] = await self._lookup(
                pid, timeout=max(0.0, deadline - trio.current_time())
            )

        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                for pid in peer_ids:
                    nursery.start_soon(one, pid)
        return outcomes

    # -- the whole view (mesh peers) -------------------------------------------------------

    async def survey(self, *, timeout: float) -> Survey:  # noqa: ASYNC109
        """Ask the bootstrap peers for every record until their answers agree, or ``timeout``.

        The view is *complete* when every peer asked answered and each named the
        same set of peers; otherwise the union of what came back is returned,
        marked partial, with the reason.
        """
        deadline = trio.current_time() + timeout
        targets = [p for p in self._network.bootstrap_peers() if p.peer_id != self._network.peer_id]
        if not targets:
            known = [p for p in self._network.known_peers() if p.peer_id != self._network.peer_id]
            targets = known[:EXCHANGE_FANOUT]
        if not targets:
            return Survey(self._live_view(), False, 0, 0, "no peer to ask")
        pause = SURVEY_RETRY_S
        note = "no answer in time"
        answered = 0
        while trio.current_time() < deadline:
            answers = await self.exchange.ask_many(
                targets, limit=MAX_ANSWER_RECORDS, timeout=deadline - trio.current_time()
            )
            self.stats.exchange_rounds += 1
            good = [a for a in answers if a.error is None]
            answered = len(good)
            # What each peer holds (itself included; leaving peers too, so all who
            # heard of a departure agree), as accepted here.
            views = {frozenset(_peer_id(s) for s in a.records) | {a.peer_id} for a in good}
            if answered == len(targets) and len(views) == 1:
                return Survey(self._live_view(), True, len(targets), answered)
            if answered < len(targets):
                note = f"{answered} of {len(targets)} bootstrap peers answered"
            else:
                note = f"the {len(targets)} bootstrap peers disagree on who is in the mesh"
            if any(len(a.records) >= MAX_ANSWER_RECORDS for a in good):
                note = "the mesh is bigger than one answer holds"
                break
            await trio.sleep(min(pause, max(0.0, deadline - trio.current_time())))
            pause = min(pause * 2, 2.0)
        return Survey(self._live_view(), False, len(targets), answered, note)

    def _live_view(self) -> dict[str, CapacityRecord]:
        own = self._network.peer_id
        return {
            pid: s.message
            for pid, s in self.book.live_items(now_ms=self._now_ms())
            if pid != own and not s.message.draining  # a leaving peer is not live
        }

    async def watch_gossip(self) -> None:
        """Take load updates from ``LOAD_TOPIC`` until cancelled (see :meth:`start`)."""
        await self.exchange.watch_gossip()


def _peer_id(signed: Signed[CapacityRecord]) -> str:
    return peer_id_from_public_key(signed.message.peer)
