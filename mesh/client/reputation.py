"""What this client knows of workers' honesty: its own checks first, others' verdicts second.

Health (:mod:`mesh.net.health`) says whether a peer answers; reputation says
whether its answers can be trusted. There is no chain and no centre: each
client keeps its own table, from its own checks, in its data directory
(:class:`mesh.files.client_state.ClientStore`; in memory when it has none).

One row per worker:

- ``confirmed``: results of it this client confirmed (an audit or a replica
  agreed, a commitment check passed);
- ``convicted``: why this client caught it answering wrongly, or None;
- ``accusers``: keys of other clients whose signed verdicts accuse it (hearsay);
- ``watch``: own clean checks still owed before an accusation is set aside;
- ``cleared``: accusations this client's own checks have already set aside.

Rules (what :meth:`Reputation.audit_rate` and :meth:`Reputation.excluded` say):

1. **Caught once, left out.** A worker this client convicted (its own verdict)
   is never chosen again by this client, for tasks or for checks.
2. **Newcomers are audited more.** Until a worker has ``NEWCOMER_CHECKS``
   confirmed results here, its results are audited at ``NEWCOMER_RATE`` at least
   (a lazy or lying newcomer is caught in its first few tasks, before it can
   take a large share of traffic).
3. **Hearsay raises audits, never excludes.** A valid verdict from another
   client puts the accused under watch: its results are audited at
   ``ACCUSED_RATE`` at least until this client's own checks passed it
   ``CLEARING_CHECKS`` times; one failed own check convicts it (rule 1), clean
   ones clear the accusation. Selection is untouched: an accused worker gets the
   same traffic as before.
4. **Sybil accusers are bounded.** An accuser counts once per worker; while a
   worker is under watch further accusations change nothing; after
   ``MAX_CLEARANCES`` clearances hearsay about it is ignored. So any number of
   accusers cost an honest worker nothing in traffic, and cost this client at
   most ``MAX_CLEARANCES x CLEARING_CHECKS`` extra passed checks of it (each
   check one extra run), after which its word is its record here.

Audit rates apply only when the caller audits at all (a base rate above 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mesh.errors import ConfigError
from mesh.files.client_state import ClientStore

logger = logging.getLogger(__name__)

NEWCOMER_CHECKS = 3  # confirmed results before a worker stops being a newcomer
NEWCOMER_RATE = 0.5  # a lying newcomer survives k of its tasks with probability 0.5^k
ACCUSED_RATE = 0.5
CLEARING_CHECKS = 3
MAX_CLEARANCES = 3
MAX_ACCUSERS = 64  # accusers remembered per worker
MAX_ROWS = 10_000  # workers remembered; hearsay about unknown workers past this is dropped
MAX_VERDICTS_LISTED = 16  # own verdict digests kept per worker
SAVE_EVERY = 32  # confirmations between two writes of the table (convictions write at once)
TABLE_VERSION = 1


@dataclass
class WorkerRecord:
    """One worker's row (see the module docstring)."""

    confirmed: int = 0
    convicted: str | None = None
    verdicts: list[str] = field(default_factory=list)
    accusers: list[str] = field(default_factory=list)
    watch: int = 0
    cleared: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "accusers": self.accusers,
            "cleared": self.cleared,
            "confirmed": self.confirmed,
            "convicted": self.convicted,
            "verdicts": self.verdicts,
            "watch": self.watch,
        }

    @classmethod
    def from_json(cls, doc: Any) -> WorkerRecord:
        if not isinstance(doc, dict):
            raise ConfigError("a reputation row must be a JSON object")
        try:
            return cls(
                confirmed=int(doc.get("confirmed", 0)),
                convicted=None if doc.get("convicted") is None else str(doc["convicted"]),
                verdicts=[str(v) for v in doc.get("verdicts", [])][:MAX_VERDICTS_LISTED],
                accusers=[str(a) for a in doc.get("accusers", [])][:MAX_ACCUSERS],
                watch=int(doc.get("watch", 0)),
                cleared=int(doc.get("cleared", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"a bad reputation row: {exc}") from exc


class Reputation:
    """This client's table of workers (see the module docstring).

    Args:
        store: where the table is kept; in memory only when None.
    """

    def __init__(self, store: ClientStore | None = None) -> None:
        self._store = store
        self._rows: dict[str, WorkerRecord] = {}
        self._unsaved = 0  # changes not yet written
        if store is not None:
            doc = store.read_reputation()
            if doc is not None:
                self._load(doc)

    def _load(self, doc: dict[str, Any]) -> None:
        if doc.get("version") != TABLE_VERSION or not isinstance(doc.get("workers"), dict):
            raise ConfigError(f"reputation table of an unknown version: {doc.get('version')!r}")
        self._rows = {str(k): WorkerRecord.from_json(v) for k, v in doc["workers"].items()}

    def _row(self, peer_id: str) -> WorkerRecord:
        row = self._rows.get(peer_id)
        if row is None:
            row = self._rows[peer_id] = WorkerRecord()
        return row

    # -- what selection and audits read ---------------------------------------------
    def excluded(self, peer_id: str) -> bool:
        """True for a worker this client caught (rule 1)."""
        row = self._rows.get(peer_id)
        return row is not None and row.convicted is not None

    def audit_rate(self, peer_id: str, base: float) -> float:
        """The probability of auditing a result of ``peer_id`` (rules 2 and 3)."""
        if base <= 0:
            return 0.0
        row = self._rows.get(peer_id)
        if row is None:
            return max(base, NEWCOMER_RATE)
        rate = base
        if row.confirmed < NEWCOMER_CHECKS:
            rate = max(rate, NEWCOMER_RATE)
        if row.watch > 0:
            rate = max(rate, ACCUSED_RATE)
        return rate

    def record(self, peer_id: str) -> WorkerRecord | None:
        """A copy of ``peer_id``'s row, or None when this client knows nothing of it."""
        row = self._rows.get(peer_id)
        return None if row is None else WorkerRecord(**row.to_json())

    def caught(self) -> dict[str, str]:
        """Every convicted worker and the reason (a copy)."""
        return {p: r.convicted for p, r in self._rows.items() if r.convicted is not None}

    def accused(self) -> dict[str, list[str]]:
        """Workers others accused, with the accusers' keys (hex), a copy."""
        return {p: list(r.accusers) for p, r in self._rows.items() if r.accusers}

    # -- what checks and verdicts tell it ---------------------------------------------
    def confirm(self, peer_id: str) -> None:
        """An own check or an independent replica confirmed a result of ``peer_id``."""
        row = self._row(peer_id)
        row.confirmed += 1
        if row.watch > 0:
            row.watch -= 1
            if row.watch == 0:
                row.cleared += 1
                logger.info("accusation against %s set aside by own checks", peer_id)
                self._changed(now=True)
                return
        self._changed(now=False)

    def convict(self, peer_id: str, reason: str, *, verdict: bytes | None = None) -> None:
        """Leave ``peer_id`` out from now on: its answer was found wrong by this client."""
        row = self._row(peer_id)
        if row.convicted is None:
            logger.warning("worker %s excluded: %s", peer_id, reason)
            row.convicted = reason
        row.watch = 0
        if verdict is not None and len(row.verdicts) < MAX_VERDICTS_LISTED:
            row.verdicts.append(verdict.hex())
        self._changed(now=True)

    def accuse(self, peer_id: str, accuser: bytes) -> bool:
        """Hearsay: another client's verdict accuses ``peer_id``. True when it raised audits.

        Never excludes (rule 3) and is bounded per accuser and per worker (rule 4).
        """
        if peer_id not in self._rows and len(self._rows) >= MAX_ROWS:
            return False
        row = self._row(peer_id)
        key = accuser.hex()
        if row.convicted is not None or key in row.accusers:
            return False
        if len(row.accusers) < MAX_ACCUSERS:
            row.accusers.append(key)
        if row.watch > 0 or row.cleared >= MAX_CLEARANCES:
            self._changed(now=True)
            return False
        row.watch = CLEARING_CHECKS
        logger.info("worker %s accused by %s: auditing it more", peer_id, key[:16])
        self._changed(now=True)
        return True

    def _changed(self, *, now: bool) -> None:
        self._unsaved += 1
        if now or self._unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write the table to the store if it changed since the last write (a no-op in memory)."""
        if self._store is None or self._unsaved == 0:
            return
        self._unsaved = 0
        workers = {p: r.to_json() for p, r in sorted(self._rows.items())}
        self._store.write_reputation({"version": TABLE_VERSION, "workers": workers})
