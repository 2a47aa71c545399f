"""Checking a worker's answer: an ErrorReply becomes its exception, a result
must carry a receipt that verifies against the task, the outputs and the worker."""

from __future__ import annotations

from mesh.core.batch import BatchResult, decode_batch_response, verify_batch_receipt
from mesh.core.envelope import Signed
from mesh.core.identity import public_key_from_peer_id
from mesh.core.messages import ErrorReply, Receipt, Task, decode_response
from mesh.core.receipts import verify_receipt
from mesh.core.values import Values
from mesh.errors import ProtocolError, VerificationError


def check_response(
    response: bytes, *, task: Signed[Task], worker: str
) -> tuple[Values, Signed[Receipt]]:
    """Decode a worker's response and verify its receipt.

    Returns:
        The outputs and the verified receipt.

    Raises:
        ProtocolError: the worker answered with an ErrorReply (its code's class).
        VerificationError: the answer is not a valid, verifying result of ``task``
            signed by ``worker``.
    """
    try:
        decoded = decode_response(response)
    except ProtocolError as exc:
        raise VerificationError(f"unreadable or forged response from {worker}: {exc}") from exc
    if isinstance(decoded, ErrorReply):
        raise decoded.to_exception()
    receipt = decoded.receipt
    try:
        verify_receipt(receipt, task=task, outputs=decoded.outputs)
    except VerificationError:
        raise
    except ProtocolError as exc:
        raise VerificationError(f"inconsistent receipt from {worker}: {exc}") from exc
    if receipt.message.worker != public_key_from_peer_id(worker):
        raise VerificationError(f"receipt from {worker} is signed by another key")
    return decoded.outputs, receipt


def check_batch_response(
    response: bytes, *, task: Signed[Task], worker: str
) -> tuple[BatchResult, Signed[Receipt]]:
    """Decode a worker's answer to a batched task and verify its receipt over every item.

    Returns:
        The decoded result (outputs and their hashes) and the verified receipt.

    Raises:
        ProtocolError: the worker answered with an ErrorReply (its code's class).
        VerificationError: not a valid, verifying result of ``task`` signed by ``worker``.
    """
    try:
        decoded = decode_batch_response(response)
    except ProtocolError as exc:
        raise VerificationError(f"unreadable or forged response from {worker}: {exc}") from exc
    if isinstance(decoded, ErrorReply):
        raise decoded.to_exception()
    receipt = decoded.receipt
    try:
        verify_batch_receipt(
            receipt, task=task, outputs=decoded.outputs, output_hashes=decoded.output_hashes
        )
    except VerificationError:
        raise
    except ProtocolError as exc:
        raise VerificationError(f"inconsistent receipt from {worker}: {exc}") from exc
    if receipt.message.worker != public_key_from_peer_id(worker):
        raise VerificationError(f"receipt from {worker} is signed by another key")
    return decoded, receipt
