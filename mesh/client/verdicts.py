"""Verdicts: made when a check catches a wrong answer, published, and read from others.

Making one (:meth:`VerdictBook.convict`): the evidence (the accused's task,
inputs, receipt and outputs, with the witnesses' results or the checks that
judged it) goes into an :class:`~mesh.core.evidence.Evidence`; a
:class:`~mesh.core.messages.Verdict` signed by this client's key commits to its
SHA-256. The verdict file is kept in the client's data directory (and in memory:
:attr:`VerdictBook.made`), the worker is convicted in this client's reputation,
and the signed verdict alone (~480 bytes) is published on ``VERDICT_TOPIC``.

Reading others' (:meth:`VerdictBook.accept`): a verdict whose signature holds,
that accuses (``agree`` False), is not ours and not from the future is hearsay:
it raises this client's audit rate on the accused
(:meth:`mesh.client.reputation.Reputation.accuse`), never excludes it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import trio

from mesh.aio.clock import WallClock
from mesh.client.reputation import Reputation
from mesh.core import limits
from mesh.core.envelope import sign_message
from mesh.core.evidence import Evidence, Exhibit, VerdictFile, verify_verdict_file
from mesh.core.identity import Identity, peer_id_from_public_key
from mesh.core.messages import Verdict
from mesh.core.signing import open_signed
from mesh.errors import MeshError
from mesh.files.client_state import ClientStore
from mesh.net.interface import VERDICT_TOPIC, Network

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
MAX_DISTANCE_MICRO = 2**53  # "infinitely far" (a wrong shape, a failed check) is capped here


class VerdictBook:
    """The verdicts this client made and the hearsay it received.

    Args:
        network: where verdicts are published and read.
        identity: this client's key (signs its verdicts).
        reputation: the table verdicts feed.
        store: where verdict files are kept (None: memory only).
        wall_clock: epoch milliseconds.
    """

    def __init__(
        self,
        *,
        network: Network,
        identity: Identity,
        reputation: Reputation,
        store: ClientStore | None,
        wall_clock: WallClock,
    ) -> None:
        self._network = network
        self._identity = identity
        self._reputation = reputation
        self._store = store
        self._now_ms = wall_clock
        self.made: list[VerdictFile] = []
        self.accepted = 0  # others' verdicts taken as hearsay
        self.rejected = 0  # gossip that was not a valid accusing verdict
        self.nursery: trio.Nursery | None = None  # set by the client: publishing runs there

    def convict(
        self,
        accused: Exhibit,
        others: Sequence[Exhibit],
        *,
        kind: str,
        distance: float,
        note: str,
    ) -> VerdictFile:
        """Make, keep and publish a verdict against ``accused``'s worker; convict it here.

        Raises:
            VerificationError: the evidence does not hold up offline (a bug in the caller).
        """
        evidence = Evidence((accused, *others), note)
        receipt = accused.receipt.message
        distance_micro = (
            MAX_DISTANCE_MICRO
            if not math.isfinite(distance)
            else min(MAX_DISTANCE_MICRO, max(0, round(distance * 1e6)))
        )
        verdict = Verdict(
            auditor=self._identity.public_key,
            worker=receipt.worker,
            task_id=receipt.task_id,
            receipt_digest=accused.receipt.digest,
            model_root=accused.task.message.model_root,
            agree=False,
            kind=kind,
            distance_micro=distance_micro,
            evidence=evidence.digest(),
            created_ms=self._now_ms(),
        )
        file = VerdictFile(sign_message(self._identity, verdict), evidence)
        verify_verdict_file(file)  # what we publish must hold up for anyone who checks it
        self.made.append(file)
        if self._store is not None:
            try:
                self._store.write_verdict(file.verdict.digest.hex(), file.encode())
            except MeshError as exc:
                logger.error("verdict file not kept: %s", exc)
        worker = peer_id_from_public_key(receipt.worker)
        self._reputation.convict(worker, f"{kind}: {note}", verdict=file.verdict.digest)
        if self.nursery is not None:
            self.nursery.start_soon(self._publish, file.verdict.envelope)
        return file

    async def _publish(self, envelope: bytes) -> None:
        try:
            await self._network.publish(VERDICT_TOPIC, envelope, timeout=PUBLISH_TIMEOUT_S)
        except MeshError as exc:
            # Others learn later or not at all; our own conviction stands regardless.
            logger.warning("verdict not published: %s", exc)

    def accept(self, data: bytes) -> bool:
        """Take another client's published verdict as hearsay; True when it raised audits."""
        try:
            signed = open_signed(data, Verdict)
        except MeshError as exc:
            self.rejected += 1
            logger.info("verdict gossip rejected: %s", exc)
            return False
        verdict = signed.message
        if (
            verdict.agree
            or verdict.auditor == self._identity.public_key
            or verdict.created_ms > self._now_ms() + limits.MAX_CLOCK_SKEW_MS
        ):
            self.rejected += 1
            return False
        self.accepted += 1
        return self._reputation.accuse(peer_id_from_public_key(verdict.worker), verdict.auditor)

    async def watch_gossip(self) -> None:
        """Read ``VERDICT_TOPIC`` until cancelled."""
        try:
            channel = await self._network.subscribe(VERDICT_TOPIC)
        except MeshError as exc:
            logger.warning("no verdict gossip: %s", exc)
            return
        async with channel:
            async for _sender, data in channel:
                self.accept(data)
