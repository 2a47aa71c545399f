"""Which failures are retried elsewhere, how long each attempt may take.

Sans-IO policy used by :class:`mesh.client.async_client.AsyncClient`:

- Retried on another peer: ``busy`` (respecting its retry-after if that peer is
  tried again), unreachable or frozen peers (``PeerUnavailable``,
  ``DeadlineExceeded``), ``internal``, ``unknown-model`` (a stale provider
  record), ``replayed`` (an earlier attempt there got through although we timed
  out), and a receipt that does not verify (``VerificationError``: the peer is
  penalised hard; the bad result is never returned).
- Not retried: our own task is wrong (``malformed``, ``too-large``,
  ``bad-signature``, ``expired``, ``invalid-input``): another peer would say the same.
  (A lying peer can thus fail one task by answering one of these codes; it
  cannot make a wrong result pass, and the caller may simply run the task again.)

The signed task is built once and re-sent as is: replay caches are per node, so
another node accepts it, and since every receipt binds the task id (the hash of
the signed task), two receipts for one task are visibly one task executed twice,
never two tasks to pay for.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.client.selection import VERIFICATION_FAILURE_WEIGHT
from mesh.errors import (
    Busy,
    DeadlineExceeded,
    InternalError,
    MeshError,
    PeerUnavailable,
    Replayed,
    UnknownModel,
    VerificationError,
)

_RETRYABLE: tuple[type[MeshError], ...] = (
    Busy,
    PeerUnavailable,
    DeadlineExceeded,
    InternalError,
    UnknownModel,
    Replayed,
    VerificationError,
)


def is_retryable(exc: MeshError) -> bool:
    """Whether another peer might succeed where this error happened."""
    return isinstance(exc, _RETRYABLE)


def failure_weight(exc: MeshError) -> float:
    """How much a failure counts against the peer in :class:`PeerBook`."""
    if isinstance(exc, VerificationError):
        return VERIFICATION_FAILURE_WEIGHT
    if isinstance(exc, Busy):
        return 0.25  # healthy but loaded: the load figure already says so
    if isinstance(exc, (UnknownModel, Replayed)):
        return 0.5
    return 1.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on the attempts of one task (keyword-only config).

    Attributes:
        max_attempts: requests sent for one task at most.
        attempt_timeout_s: the longest one attempt may take.
        min_attempt_s: an attempt is never given less than this while time is left.
        share_when_others: with untried peers left, one attempt takes at most
            this share of the remaining time, so a frozen peer cannot eat the
            whole deadline.
    """

    max_attempts: int = 6
    attempt_timeout_s: float = 10.0
    min_attempt_s: float = 1.0
    share_when_others: float = 0.5

    def attempt_timeout(self, remaining_s: float, *, others_left: bool) -> float:
        """Seconds for the next attempt given the time left to the caller's deadline."""
        budget = min(remaining_s, self.attempt_timeout_s)
        if others_left:
            budget = min(budget, max(self.min_attempt_s, remaining_s * self.share_when_others))
        return max(0.0, min(budget, remaining_s))
