"""The retry plan of one task: which peer next, whether to go on, which error to raise.

Sans-IO: the client's async loop asks :meth:`TaskPlan.next_step` what to do,
does it (send, ask the DHT again, sleep) and reports failures back with
:meth:`TaskPlan.failed`. Times are trio seconds, passed in.

Decision table, checked top to bottom at each step (``now`` is the current time):

=================================================  ==============================================
situation                                          step
=================================================  ==============================================
a failure was ``FATAL`` (our own task is wrong),   :class:`GiveUp` with that error
or ``refusal_quorum`` workers refused the task
past the deadline, or ``max_attempts`` sent        :class:`GiveUp` with :meth:`final_error`
a busy peer's retry-after has passed               it becomes untried again (then go on)
an untried candidate is left                       :class:`Attempt` on the one ``pick`` chooses,
                                                   with a share of the time left
none untried, the DHT not asked again yet          :class:`Rediscover` (once per task)
none untried, a busy peer frees before deadline    :class:`Wait` until the first one frees
otherwise                                          :class:`GiveUp` with :meth:`final_error`
=================================================  ==============================================

:meth:`final_error`, in order: a result that failed verification (only unverifiable
answers came back), :class:`~mesh.errors.DeadlineExceeded` once the deadline has
passed (naming the last error), the last error, else
:class:`~mesh.errors.NoPeersAvailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mesh.client.retry import Failure, RetryPolicy, classify
from mesh.errors import DeadlineExceeded, MeshError, NoPeersAvailable, VerificationError


@dataclass(frozen=True, slots=True)
class Attempt:
    """Send the task to ``peer`` and wait at most ``timeout`` seconds for its answer."""

    peer: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Rediscover:
    """Ask the DHT for providers again (every known one was tried); report new ones."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Sleep until ``until``: a busy peer's retry-after runs out then."""

    until: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop and raise ``error``."""

    error: MeshError


Step = Attempt | Rediscover | Wait | GiveUp

# Chooses one of the given untried candidates (by score), or None to use none of them.
Pick = Callable[[frozenset[str]], str | None]


class TaskPlan:
    """The state of one task's attempts (see the module's decision table).

    Args:
        deadline: the caller's deadline.
        policy: attempt bounds.
        peers: the candidates known at the start.
        what: names the task's model in errors.
    """

    def __init__(
        self, *, deadline: float, policy: RetryPolicy, peers: Iterable[str], what: str
    ) -> None:
        self._deadline = deadline
        self._policy = policy
        self._peers: set[str] = set(peers)
        self._what = what
        self._tried: set[str] = set()
        self._busy_until: dict[str, float] = {}
        self._rediscovered = False
        self._attempts = 0
        self._last_error: MeshError | None = None
        self._bad_result: VerificationError | None = None
        self._fatal: MeshError | None = None
        self._refused: list[str] = []  # workers that answered invalid-input, in order

    @property
    def attempts(self) -> int:
        """Requests sent so far."""
        return self._attempts

    @property
    def refused(self) -> tuple[str, ...]:
        """Workers that refused the task as ``invalid-input`` (at fault once another
        worker returns a verified result: the caller counts it against them then)."""
        return tuple(self._refused)

    def add_peers(self, peers: Iterable[str]) -> int:
        """Add candidates found later (after :class:`Rediscover`); return how many are new."""
        new = set(peers) - self._peers
        self._peers |= new
        return len(new)

    def next_step(self, now: float, pick: Pick) -> Step:
        """What to do at ``now``; ``pick`` chooses among the untried candidates.

        Raises:
            ValueError: ``pick`` returned a peer it was not offered (a bug in the caller).
        """
        if self._fatal is not None:
            return GiveUp(self._fatal)
        remaining = self._deadline - now
        if remaining <= 0 or self._attempts >= self._policy.max_attempts:
            return GiveUp(self.final_error(now))
        for peer in [p for p, until in self._busy_until.items() if until <= now]:
            del self._busy_until[peer]
            self._tried.discard(peer)
        untried = frozenset(self._peers - self._tried)
        chosen = pick(untried) if untried else None
        if chosen is not None:
            if chosen not in untried:
                raise ValueError(f"pick chose {chosen!r}, which is not an untried candidate")
            self._tried.add(chosen)
            self._attempts += 1
            timeout = self._policy.attempt_timeout(remaining, others_left=len(untried) > 1)
            return Attempt(chosen, timeout)
        if not self._rediscovered:
            self._rediscovered = True
            return Rediscover()
        if self._busy_until:
            wake = min(self._busy_until.values())
            if wake < self._deadline:
                return Wait(wake)
        return GiveUp(self.final_error(now))

    def failed(self, peer: str, exc: MeshError, *, now: float) -> Failure:
        """Record that the attempt on ``peer`` ended in ``exc``; return what it means."""
        kind = classify(exc)
        if kind is Failure.FATAL:
            self._fatal = exc
        elif kind is Failure.BUSY:
            retry_after_ms = getattr(exc, "retry_after_ms", 0)
            self._busy_until[peer] = now + retry_after_ms / 1000
        elif kind is Failure.LIED:
            assert isinstance(exc, VerificationError)
            self._bad_result = exc
        elif kind is Failure.REFUSED:
            if peer not in self._refused:
                self._refused.append(peer)
            if len(self._refused) >= self._policy.refusal_quorum:
                self._fatal = exc  # several workers agree: the task itself is wrong
        self._last_error = exc
        return kind

    def final_error(self, now: float) -> MeshError:
        """The error to raise when the plan gives up (see the module docstring)."""
        if self._bad_result is not None:
            return self._bad_result
        last = self._last_error
        if now >= self._deadline:
            error = DeadlineExceeded(
                f"no verified result within the deadline after {self._attempts} attempt(s)"
                + (f"; last error: {last}" if last else "")
            )
            error.__cause__ = last
            return error
        if last is not None:
            return last
        return NoPeersAvailable(f"no live peer serves model {self._what}")
