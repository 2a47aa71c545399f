"""The retry plan, case by case through its decision table (mesh.client.plan)."""

from __future__ import annotations

import pytest

from mesh.client.plan import Attempt, GiveUp, Rediscover, TaskPlan, Wait
from mesh.client.retry import Failure, RetryPolicy
from mesh.errors import (
    Busy,
    DeadlineExceeded,
    Expired,
    InternalError,
    InvalidInput,
    NoPeersAvailable,
    OutputMismatch,
    PeerUnavailable,
    UnknownModel,
)

pytestmark = pytest.mark.unit

POLICY = RetryPolicy(max_attempts=6, attempt_timeout_s=10.0, min_attempt_s=1.0)


def first(untried: frozenset[str]) -> str | None:
    """Pick the alphabetically first untried peer (selection is tested elsewhere)."""
    return min(untried)


def plan(*peers: str, deadline: float = 100.0, policy: RetryPolicy = POLICY) -> TaskPlan:
    return TaskPlan(deadline=deadline, policy=policy, peers=peers, what="model")


def test_an_untried_peer_gets_an_attempt_with_a_share_of_the_time() -> None:
    p = plan("a", "b")
    assert p.next_step(0.0, first) == Attempt("a", 10.0)
    assert p.attempts == 1
    # The last untried peer may take the whole attempt bound.
    p.failed("a", PeerUnavailable("gone"), now=1.0)
    assert p.next_step(96.0, first) == Attempt("b", 4.0)


def test_with_others_left_one_attempt_takes_at_most_half_the_time_left() -> None:
    p = plan("a", "b", deadline=8.0)
    assert p.next_step(0.0, first) == Attempt("a", 4.0)


def test_pick_may_decline_every_candidate() -> None:
    p = plan("a")
    assert p.next_step(0.0, lambda untried: None) == Rediscover()


def test_pick_must_choose_an_offered_peer() -> None:
    with pytest.raises(ValueError, match="not an untried candidate"):
        plan("a").next_step(0.0, lambda untried: "z")


def test_a_fatal_error_gives_up_at_once_with_that_error() -> None:
    p = plan("a", "b")
    p.next_step(0.0, first)
    error = Expired("window over")
    assert p.failed("a", error, now=1.0) is Failure.FATAL
    assert p.next_step(1.0, first) == GiveUp(error)


def test_invalid_input_from_one_worker_moves_on_and_names_it() -> None:
    # The client checked the task: one worker refusing it is that worker's fault.
    p = plan("a", "b", "c")
    assert isinstance(p.next_step(0.0, first), Attempt)
    assert p.failed("a", InvalidInput("lies"), now=0.1) is Failure.REFUSED
    step = p.next_step(0.1, first)
    assert isinstance(step, Attempt) and step.peer == "b"
    assert p.refused == ("a",)  # the caller counts it against "a" once "b" succeeds


def test_invalid_input_from_a_quorum_of_workers_is_the_tasks_fault() -> None:
    p = plan("a", "b", "c")
    p.next_step(0.0, first)
    p.failed("a", InvalidInput("too long"), now=0.1)
    p.next_step(0.1, first)
    error = InvalidInput("too long")
    p.failed("b", error, now=0.2)  # RetryPolicy.refusal_quorum = 2 distinct workers
    assert p.next_step(0.2, first) == GiveUp(error)
    assert p.refused == ("a", "b")


def test_every_peer_tried_asks_the_dht_once_then_gives_up() -> None:
    p = plan("a")
    p.next_step(0.0, first)
    p.failed("a", InternalError("boom"), now=1.0)
    assert p.next_step(1.0, first) == Rediscover()
    assert p.add_peers(["a"]) == 0  # nobody new
    step = p.next_step(2.0, first)
    assert isinstance(step, GiveUp) and isinstance(step.error, InternalError)


def test_peers_found_by_rediscovery_are_tried() -> None:
    p = plan("a")
    p.next_step(0.0, first)
    p.failed("a", UnknownModel("stale provider"), now=1.0)
    assert p.next_step(1.0, first) == Rediscover()
    assert p.add_peers(["a", "c"]) == 1
    assert p.next_step(2.0, first) == Attempt("c", 10.0)


def test_a_busy_peer_is_waited_for_and_tried_again_after_its_retry_after() -> None:
    p = plan("a")
    p.next_step(0.0, first)
    assert p.failed("a", Busy(retry_after_ms=3_000), now=1.0) is Failure.BUSY
    assert p.next_step(1.0, first) == Rediscover()
    assert p.next_step(1.5, first) == Wait(4.0)
    assert p.next_step(4.0, first) == Attempt("a", 10.0)


def test_a_busy_peer_freeing_after_the_deadline_is_not_waited_for() -> None:
    p = plan("a", deadline=5.0)
    p.next_step(0.0, first)
    p.failed("a", Busy(retry_after_ms=10_000), now=1.0)
    assert p.next_step(1.0, first) == Rediscover()
    step = p.next_step(1.5, first)
    assert isinstance(step, GiveUp) and isinstance(step.error, Busy)


def test_max_attempts_bounds_the_requests() -> None:
    p = plan("a", "b", "c", policy=RetryPolicy(max_attempts=2))
    for peer in ("a", "b"):
        assert p.next_step(0.0, first) == Attempt(peer, pytest.approx(10.0))
        p.failed(peer, PeerUnavailable("gone"), now=0.0)
    step = p.next_step(0.0, first)
    assert isinstance(step, GiveUp) and isinstance(step.error, PeerUnavailable)


def test_past_the_deadline_the_error_is_a_deadline_naming_the_last_one() -> None:
    p = plan("a", "b", deadline=10.0)
    p.next_step(0.0, first)
    last = PeerUnavailable("frozen")
    p.failed("a", last, now=5.0)
    step = p.next_step(10.0, first)
    assert isinstance(step, GiveUp) and isinstance(step.error, DeadlineExceeded)
    assert "frozen" in str(step.error) and step.error.__cause__ is last


def test_an_unverifiable_answer_is_the_error_when_nothing_verified() -> None:
    p = plan("a", "b")
    p.next_step(0.0, first)
    lie = OutputMismatch("outputs do not match")
    assert p.failed("a", lie, now=1.0) is Failure.LIED
    p.next_step(1.0, first)
    p.failed("b", PeerUnavailable("gone"), now=2.0)
    p.next_step(2.0, first)  # Rediscover
    assert p.next_step(3.0, first) == GiveUp(lie)
    assert plan("a").final_error(200.0) is not lie


def test_no_candidates_at_all_is_no_peers_available() -> None:
    p = plan()
    assert p.next_step(0.0, first) == Rediscover()
    step = p.next_step(0.0, first)
    assert isinstance(step, GiveUp) and isinstance(step.error, NoPeersAvailable)
