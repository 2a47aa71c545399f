"""Signing and the time-dependent checks of signed messages.

:func:`sign_message` and :func:`open_signed` (from :mod:`mesh.core.envelope`)
make and open envelopes; the ``verify_*`` functions here add the rules that
depend on time or on other messages. They return ``None`` or raise a typed error,
and take the time as a parameter (milliseconds since the Unix epoch) so expiry is
tested on a fake clock.
"""

from __future__ import annotations

from mesh.core import limits
from mesh.core.envelope import Signed, open_signed, pae, sign_message
from mesh.core.messages import CapacityRecord, Receipt, Task, Verdict
from mesh.errors import BadSignature, Expired, TaskMismatch

__all__ = [
    "Signed",
    "open_signed",
    "pae",
    "sign_message",
    "verify_capacity",
    "verify_task",
    "verify_verdict",
]


def verify_task(
    signed: Signed[Task],
    *,
    now_ms: int,
    max_window_ms: int = limits.MAX_TASK_WINDOW_MS,
    skew_ms: int = limits.MAX_CLOCK_SKEW_MS,
) -> None:
    """Check a task's validity window at ``now_ms`` (its signature was checked on open).

    Raises:
        Expired: ``now_ms`` is past ``expires_ms``; ``created_ms`` is more than
            ``skew_ms`` in the future; or the window is negative or longer than
            ``max_window_ms`` (a long window would let a replay cache forget it).
    """
    task = signed.message
    window = task.expires_ms - task.created_ms
    if window < 0 or window > max_window_ms:
        raise Expired(f"task window of {window} ms is outside [0, {max_window_ms}]")
    if task.created_ms > now_ms + skew_ms:
        raise Expired(f"task created {task.created_ms - now_ms} ms in the future")
    if now_ms > task.expires_ms:
        raise Expired(f"task expired {now_ms - task.expires_ms} ms ago")


def verify_capacity(
    signed: Signed[CapacityRecord],
    *,
    now_ms: int,
    expected_peer: bytes | None = None,
    max_ttl_ms: int = limits.MAX_CAPACITY_TTL_MS,
    skew_ms: int = limits.MAX_CLOCK_SKEW_MS,
) -> None:
    """Check a capacity record for use at ``now_ms``.

    Args:
        signed: the opened record.
        now_ms: the current time.
        expected_peer: the public key the record must belong to (the DHT key's
            peer), or None to accept any signer.
        max_ttl_ms: the longest lifetime accepted.
        skew_ms: how far in the future ``created_ms`` may lie.

    Raises:
        BadSignature: the record is signed by another peer than ``expected_peer``.
        Expired: expired, created in the future, or living longer than ``max_ttl_ms``.
    """
    record = signed.message
    if expected_peer is not None and record.peer != expected_peer:
        raise BadSignature("capacity record signed by another peer than its key names")
    ttl = record.expires_ms - record.created_ms
    if ttl < 0 or ttl > max_ttl_ms:
        raise Expired(f"capacity record lifetime of {ttl} ms is outside [0, {max_ttl_ms}]")
    if record.created_ms > now_ms + skew_ms:
        raise Expired("capacity record created in the future")
    if now_ms > record.expires_ms:
        raise Expired(f"capacity record expired {now_ms - record.expires_ms} ms ago")


def verify_verdict(signed: Signed[Verdict], *, receipt: Signed[Receipt] | None = None) -> None:
    """Check that a verdict judges ``receipt`` (its signature was checked on open).

    Raises:
        TaskMismatch: the verdict names another receipt, worker or task.
    """
    if receipt is None:
        return
    verdict = signed.message
    if verdict.receipt_digest != receipt.digest:
        raise TaskMismatch("verdict judges another receipt")
    if verdict.worker != receipt.message.worker or verdict.task_id != receipt.message.task_id:
        raise TaskMismatch("verdict names another worker or task than the receipt")
