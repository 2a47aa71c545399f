"""What every response carries so a caller can check it offline with ``mesh verify``.

- Header ``X-Mesh-Receipt``: the base64 of each receipt's signed envelope bytes,
  comma-separated when a request ran as several tasks.
- Body field ``mesh``: the same receipts, the signed task envelopes they answer,
  the outputs as the worker returned them (canonical values encoding), each
  worker's PeerID, and the verification mode asked for. Decode one receipt,
  task and output from base64 into files and run
  ``mesh verify RECEIPT --task TASK --output OUTPUT``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from mesh.client.results import RunResult
from mesh.core.values import encode_values

RECEIPT_HEADER = "X-Mesh-Receipt"
VERIFY_HEADER = "X-Mesh-Verify"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def receipt_header(results: Sequence[RunResult]) -> str:
    """The ``X-Mesh-Receipt`` value: base64 receipt envelopes, comma-separated."""
    return ",".join(_b64(r.receipt.envelope) for r in results)


def mesh_field(
    results: Sequence[RunResult], *, verify: str, seed: int | None = None
) -> dict[str, Any]:
    """The ``mesh`` object of a response body.

    Args:
        results: the verified results, in request order.
        verify: the verification mode the tasks asked for.
        seed: the sampling seed used (generation only), drawn by the gateway
            when the caller gave none.
    """
    field: dict[str, Any] = {
        "verify": verify,
        "model_root": results[0].task.message.model_root.hex() if results else None,
        "workers": [r.worker for r in results],
        "receipts": [_b64(r.receipt.envelope) for r in results],
        "tasks": [_b64(r.task.envelope) for r in results],
        "outputs": [_b64(encode_values(r.outputs)) for r in results],
        "task_ids": [r.receipt.message.task_id.hex() for r in results],
    }
    if seed is not None:
        field["seed"] = seed
    return field
