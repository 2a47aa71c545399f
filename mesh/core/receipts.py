"""Receipts: a worker's signed statement of what it ran, and their offline check.

A receipt binds the task (``task_id`` = digest of the signed task envelope), the
model content (``model_root``), the outputs (``output_hash`` =
:func:`~mesh.core.values.values_hash`) and the worker's key, and chains to the
worker's previous receipt (``seq``, ``prev``): two receipts with one ``seq`` are
proof of equivocation. The chain is kept by :mod:`mesh.node.receipt_log`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mesh.core.envelope import Signed, sign_message
from mesh.core.identity import Identity
from mesh.core.messages import Receipt, RuntimeValue, Task
from mesh.core.tensors import Tensor
from mesh.core.values import values_hash
from mesh.errors import MalformedMessage, OutputMismatch, TaskMismatch, VerificationError

ZERO_HASH = bytes(32)  # ``prev`` of a worker's first receipt


def make_receipt(
    identity: Identity,
    *,
    task_id: bytes,
    client: bytes,
    seq: int,
    prev: bytes,
    model_root: bytes,
    runtime: Mapping[str, RuntimeValue],
    output_hash: bytes,
    started_ms: int,
    finished_ms: int,
    commitment: bytes = b"",
) -> Signed[Receipt]:
    """Build and sign a receipt. Most callers use :meth:`ReceiptLog.issue`, which
    fills ``seq`` and ``prev`` and appends it to the chain."""
    receipt = Receipt(
        task_id=task_id,
        worker=identity.public_key,
        client=client,
        seq=seq,
        prev=prev,
        model_root=model_root,
        runtime=dict(runtime),
        output_hash=output_hash,
        started_ms=started_ms,
        finished_ms=finished_ms,
        commitment=commitment,
    )
    return sign_message(identity, receipt)


def verify_receipt(
    signed: Signed[Receipt],
    *,
    task: Signed[Task] | None = None,
    outputs: Mapping[str, Tensor | Sequence[str]] | None = None,
) -> None:
    """Check a receipt (already opened, so its signature holds) against a task and outputs.

    Args:
        signed: the receipt, from :func:`~mesh.core.envelope.open_signed` or
            :func:`~mesh.core.messages.decode_response`.
        task: the signed task it should answer, or None to skip the binding.
        outputs: the outputs it should cover, or None to skip the hash check.

    Raises:
        MalformedMessage: the receipt is inconsistent in itself (times, chain start).
        TaskMismatch: bound to another task, client or model, or not the targeted worker.
        OutputMismatch: ``outputs`` do not hash to ``output_hash``.
    """
    receipt = signed.message
    if receipt.finished_ms < receipt.started_ms:
        raise MalformedMessage("receipt finished before it started")
    if receipt.seq == 0 and receipt.prev != ZERO_HASH:
        raise MalformedMessage("the first receipt of a chain must have prev = 32 zero bytes")
    if task is not None:
        if receipt.task_id != task.digest:
            raise TaskMismatch("receipt answers another task")
        if receipt.client != task.message.client:
            raise TaskMismatch("receipt names another client than the task's signer")
        if receipt.model_root != task.message.model_root:
            raise TaskMismatch("receipt names another model_root than the task")
        if task.message.target and task.message.target != receipt.worker:
            raise TaskMismatch("receipt signed by a worker the task was not addressed to")
    if outputs is not None and values_hash(outputs) != receipt.output_hash:
        raise OutputMismatch("outputs do not match the receipt's output_hash")


def verify_chain_link(previous: Signed[Receipt], following: Signed[Receipt]) -> None:
    """Check that ``following`` is the worker's receipt right after ``previous``.

    Raises:
        VerificationError: another worker, a gap in ``seq``, or ``prev`` is not the
            digest of ``previous``.
    """
    if following.message.worker != previous.message.worker:
        raise VerificationError("receipts of two different workers")
    if following.message.seq != previous.message.seq + 1:
        raise VerificationError(
            f"seq {following.message.seq} does not follow {previous.message.seq}"
        )
    if following.message.prev != previous.digest:
        raise VerificationError(f"receipt {following.message.seq} does not link to its predecessor")


def is_equivocation(first: Signed[Receipt], second: Signed[Receipt]) -> bool:
    """True when one worker signed two different receipts with one ``seq``.

    Both receipts are opened (signatures hold), so the pair is a proof anyone can
    check that the worker forked its chain.
    """
    return (
        first.message.worker == second.message.worker
        and first.message.seq == second.message.seq
        and first.digest != second.digest
    )
