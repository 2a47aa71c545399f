"""What a failed attempt means, and how long each attempt may take.

Sans-IO policy used by :mod:`mesh.client.plan`. Every error an attempt can end
in falls in one :class:`Failure` kind; the kind decides both whether the task
moves to another peer and what the client learns about the peer:

==================  =====================================  ===================  ==================
kind                errors                                 next                 about the peer
==================  =====================================  ===================  ==================
``BUSY``            ``busy``                               another peer; this   nothing (its load
                                                           one again after its  figure says so)
                                                           retry-after
``UNREACHABLE``     ``PeerUnavailable``,                   another peer         the transport
                    ``DeadlineExceeded``                                        already marked it
                                                                                in the health list
``WORKER_FAULT``    ``internal``                           another peer         marked unhealthy
``NOT_HERE``        ``unknown-model`` (a stale provider    another peer         forgotten as a
                    record), ``replayed`` (an earlier                           provider of the
                    attempt there got through although                          model (stale) /
                    we timed out), ``OtherRuntimeClass``                        nothing (replayed,
                    (a stream's continuation on a worker                        other class)
                    of another runtime class)
``LIED``            ``VerificationError``: the answer      another peer; the    caught: left out
                    does not verify                        bad result is never  by this client
                                                           returned
``REFUSED``         ``invalid-input``: the client checked  another peer, until  marked unhealthy
                    the task against the model's manifest  ``refusal_quorum``   once another
                    before sending (mesh.client.precheck), distinct workers     worker returns a
                    so a worker refusing it is at fault    refused it (then     verified result
                    (or saw what the client cannot: the    the task is wrong:   for the task
                    token count of an HF tokenizer)        raise)
``FATAL``           our own task is wrong: ``malformed``,  raise at once        nothing
                    ``too-large``, ``bad-signature``,
                    ``expired``; a stream that cannot
                    go on (``StreamDiverged``)
==================  =====================================  ===================  ==================

The signed task is built once and re-sent as is: replay caches are per node, so
another node accepts it, and since every receipt binds the task id (the hash of
the signed task), two receipts for one task are visibly one task executed twice,
never two tasks to pay for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mesh.errors import (
    Busy,
    ConfigError,
    DeadlineExceeded,
    InternalError,
    InvalidInput,
    MeshError,
    OtherRuntimeClass,
    PeerUnavailable,
    Replayed,
    UnknownModel,
    VerificationError,
)


class Failure(enum.Enum):
    """What one failed attempt means (see the module's table)."""

    BUSY = "busy"
    UNREACHABLE = "unreachable"
    WORKER_FAULT = "worker-fault"
    NOT_HERE = "not-here"
    LIED = "lied"
    REFUSED = "refused"
    FATAL = "fatal"

    @property
    def retryable(self) -> bool:
        """Whether another peer might succeed where this failure happened."""
        return self is not Failure.FATAL


# Checked in order: the first class the error is an instance of gives its kind.
_KINDS: tuple[tuple[type[MeshError], Failure], ...] = (
    (Busy, Failure.BUSY),
    (PeerUnavailable, Failure.UNREACHABLE),
    (DeadlineExceeded, Failure.UNREACHABLE),
    (InternalError, Failure.WORKER_FAULT),
    (UnknownModel, Failure.NOT_HERE),
    (Replayed, Failure.NOT_HERE),
    (OtherRuntimeClass, Failure.NOT_HERE),
    (VerificationError, Failure.LIED),
    (InvalidInput, Failure.REFUSED),
)


def classify(exc: MeshError) -> Failure:
    """The kind of failure ``exc`` is; anything not listed is ``FATAL``."""
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    return Failure.FATAL


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
        refusal_quorum: this many distinct workers answering ``invalid-input``
            to one task make it the task's fault (raised), not theirs: two, so
            one lying worker never fails a task and a task the client's checks
            could not judge does not wander the whole mesh.
    """

    max_attempts: int = 6
    attempt_timeout_s: float = 10.0
    min_attempt_s: float = 1.0
    share_when_others: float = 0.5
    refusal_quorum: int = 2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if self.refusal_quorum < 1:
            raise ConfigError("refusal_quorum must be at least 1")
        if not 0 < self.min_attempt_s <= self.attempt_timeout_s:
            raise ConfigError("need 0 < min_attempt_s <= attempt_timeout_s")
        if not 0 < self.share_when_others <= 1:
            raise ConfigError("share_when_others must be in (0, 1]")

    def attempt_timeout(self, remaining_s: float, *, others_left: bool) -> float:
        """Seconds for the next attempt given the time left to the caller's deadline."""
        budget = min(remaining_s, self.attempt_timeout_s)
        if others_left:
            budget = min(budget, max(self.min_attempt_s, remaining_s * self.share_when_others))
        return max(0.0, min(budget, remaining_s))
