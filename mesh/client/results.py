"""What a client hands back: verified results and peer views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mesh.core.batch import ItemProof, verify_batch_item
from mesh.core.envelope import Signed
from mesh.core.messages import CapacityRecord, Receipt, Task
from mesh.core.receipts import verify_receipt
from mesh.core.tensors import Tensor
from mesh.core.values import Values


@dataclass(frozen=True, slots=True)
class Verification:
    """What was done to verify a result beyond its receipt (see mesh.client.verification).

    Attributes:
        mode: ``signature``, ``audit`` or ``redundant``.
        checked: True when the result was checked beyond its receipt (an audit was
            drawn and done, or the mode is ``redundant``).
        confirmed_by: who confirmed it: PeerIDs whose own run agreed or whose
            commitment check passed, ``"local"`` for this client's own check.
        extra_runs: runs of the task beyond the one returned (re-runs, replicas,
            tie-breakers).
        checks: commitment checks (one forward pass each) asked for.
        verdicts: hex digests of the verdicts made while settling it.
        note: what the caller should know, e.g. why a drawn audit could not be done.
    """

    mode: str
    checked: bool = False
    confirmed_by: tuple[str, ...] = ()
    extra_runs: int = 0
    checks: int = 0
    verdicts: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class RunResult:
    """A verified result.

    Attributes:
        outputs: the model's outputs (their hash is the receipt's ``output_hash``).
        receipt: the worker's signed receipt (verified against ``task`` and ``outputs``).
        task: the signed task that was run.
        worker: the PeerID of the worker that ran it (the receipt's signer).
        latency_ms: client-observed time of the successful attempt.
        attempts: requests sent for this task (1 when the first peer answered).
        verification: what the verification mode did beyond the receipt (None
            for a result of :meth:`AsyncClient.run_task`, which does nothing more).
        proof: for an item of a batched task (``map`` batches), where it sits in
            the batch: ``receipt`` and ``task`` are the batch's, ``outputs`` this
            item's, and the proof ties the two (:func:`mesh.core.batch.verify_batch_item`).
            None for a task of its own.
        inputs: the item's inputs when ``proof`` is set (to check them too), else None.
    """

    outputs: Values
    receipt: Signed[Receipt]
    task: Signed[Task]
    worker: str
    latency_ms: float
    attempts: int
    verification: Verification | None = None
    proof: ItemProof | None = None
    inputs: Mapping[str, Tensor | Sequence[str]] | None = None

    def verify(self) -> None:
        """Check this result offline, as anyone holding it could: receipt, task, outputs.

        Raises:
            VerificationError: it does not verify.
        """
        if self.proof is None:
            verify_receipt(self.receipt, task=self.task, outputs=self.outputs)
        else:
            verify_batch_item(
                self.receipt, task=self.task, outputs=self.outputs, proof=self.proof,
                inputs=self.inputs,
            )  # fmt: skip


@dataclass(frozen=True, slots=True)
class BatchRun:
    """A verified batched task: every item's outputs under one receipt.

    Attributes:
        outputs: each item's outputs, in order.
        output_hashes: their hashes (``values_hash``), the leaves under ``output_hash``.
        receipt: the worker's receipt (``output_hash`` is the items' Merkle root).
        task: the signed batched task.
        worker: the PeerID that ran it.
        latency_ms: client-observed time of the successful attempt.
        attempts: requests sent for it.
    """

    outputs: list[Values]
    output_hashes: list[bytes]
    receipt: Signed[Receipt]
    task: Signed[Task]
    worker: str
    latency_ms: float
    attempts: int


@dataclass(frozen=True, slots=True)
class PeerView:
    """One live peer as ``peers()`` lists it."""

    peer_id: str
    record: CapacityRecord
    latency_ms: float | None


@dataclass(frozen=True, slots=True)
class PeerList:
    """Every live peer found by ``peer_list()``, and whether the view is complete.

    Attributes:
        peers: the live peers, sorted by peer id.
        complete: every bootstrap peer answered and they all named the same
            peers; False means the list may miss peers (see ``note``).
        asked: bootstrap peers asked.
        answered: bootstrap peers that answered in the last round.
        note: why the view is partial ("" when complete).
    """

    peers: list[PeerView]
    complete: bool
    asked: int
    answered: int
    note: str = ""
