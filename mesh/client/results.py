"""What a client hands back: verified results and peer views."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.envelope import Signed
from mesh.core.messages import CapacityRecord, Receipt, Task
from mesh.core.values import Values


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
    """

    outputs: Values
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
