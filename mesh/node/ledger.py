"""The earnings ledger: a worker's receipt log read back, checked and totalled.

:func:`read_ledger` checks the whole chain (every signature, one worker,
consecutive ``seq``, ``prev`` links: :func:`mesh.core.receipt_chain.check_chain`)
before it counts anything, so a tampered, truncated-in-the-middle or foreign log
is refused with the record where it breaks; only a torn final record (a crash
mid-write) is tolerated, and reported. :func:`totals` groups the receipts in a
time range by model and by client: tasks, compute (``finished_ms - started_ms``)
and earnings (the price in force when each receipt was issued, see
:mod:`mesh.node.pricing`, one price per task).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mesh.core.envelope import Signed
from mesh.core.identity import peer_id_from_public_key
from mesh.core.messages import Receipt
from mesh.core.receipt_chain import check_chain, open_records
from mesh.errors import ConfigError
from mesh.node.pricing import price_of


@dataclass(frozen=True, slots=True)
class Ledger:
    """A checked receipt log.

    Attributes:
        path: the file.
        worker: the worker's PeerID ("" for an empty log).
        receipts: every complete record, in chain order.
        torn_bytes: bytes of a torn final record left out (0 normally).
    """

    path: Path
    worker: str
    receipts: tuple[Signed[Receipt], ...]
    torn_bytes: int


def read_ledger(path: Path) -> Ledger:
    """Read and check a receipt log.

    Raises:
        ConfigError: the file cannot be read.
        VerificationError: the chain does not check (tampered, foreign, broken link).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read receipt log {path}: {exc.strerror}") from exc
    chain = check_chain(data, source=str(path))
    receipts = tuple(open_records(data[: chain.good_bytes], source=str(path)))
    worker = peer_id_from_public_key(chain.worker) if chain.worker else ""
    return Ledger(path, worker, receipts, len(data) - chain.good_bytes)


@dataclass(slots=True)
class Total:
    """Tasks, compute and earnings of one group."""

    tasks: int = 0
    compute_ms: int = 0
    earned_micro: int = 0
    first_ms: int | None = None
    last_ms: int | None = None

    def add(self, receipt: Receipt) -> None:
        self.tasks += 1
        self.compute_ms += receipt.finished_ms - receipt.started_ms
        self.earned_micro += price_of(receipt)
        self.first_ms = min(receipt.finished_ms, self.first_ms or receipt.finished_ms)
        self.last_ms = max(receipt.finished_ms, self.last_ms or 0)

    def to_json(self) -> dict[str, int | None]:
        return {
            "tasks": self.tasks,
            "compute_ms": self.compute_ms,
            "earned_micro": self.earned_micro,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
        }


@dataclass(slots=True)
class Totals:
    """Totals over a time range: all, by model, by client, by (model, client)."""

    since_ms: int | None
    until_ms: int | None
    all: Total = field(default_factory=Total)
    by_model: dict[str, Total] = field(default_factory=dict)
    by_client: dict[str, Total] = field(default_factory=dict)
    by_pair: dict[tuple[str, str], Total] = field(default_factory=dict)


def totals(
    receipts: Iterable[Signed[Receipt]],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    model_name: Callable[[bytes], str] = lambda root: root.hex(),
) -> Totals:
    """Group receipts finished in ``[since_ms, until_ms)`` by model and by client.

    Args:
        receipts: opened receipts (a checked ledger's).
        since_ms: first millisecond counted (None: from the start).
        until_ms: first millisecond not counted (None: to the end).
        model_name: the label of a model_root (a zoo name, else hex).
    """
    result = Totals(since_ms, until_ms)
    for signed in receipts:
        receipt = signed.message
        if since_ms is not None and receipt.finished_ms < since_ms:
            continue
        if until_ms is not None and receipt.finished_ms >= until_ms:
            continue
        model = model_name(receipt.model_root)
        client = peer_id_from_public_key(receipt.client)
        result.all.add(receipt)
        result.by_model.setdefault(model, Total()).add(receipt)
        result.by_client.setdefault(client, Total()).add(receipt)
        result.by_pair.setdefault((model, client), Total()).add(receipt)
    return result
