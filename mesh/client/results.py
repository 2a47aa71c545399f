"""What a client hands back: verified results and peer views."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.envelope import Signed
from mesh.core.messages import CapacityRecord, Receipt, Task
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
    """

    outputs: Values
    receipt: Signed[Receipt]
    task: Signed[Task]
    worker: str
    latency_ms: float
    attempts: int
    verification: Verification | None = None


@dataclass(frozen=True, slots=True)
class PeerView:
    """One live peer as ``peers()`` lists it."""

    peer_id: str
    record: CapacityRecord
    latency_ms: float | None
