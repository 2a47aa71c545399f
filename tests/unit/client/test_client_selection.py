"""Peer scoring: load, measured latency, the health list's failures; choice among near-equals."""

from __future__ import annotations

import random

import pytest

from mesh.client.retry import Failure, RetryPolicy, classify
from mesh.client.selection import Load, PeerBook
from mesh.errors import (
    BadSignature,
    Busy,
    CommitmentMismatch,
    ConfigError,
    DeadlineExceeded,
    Expired,
    InternalError,
    InvalidInput,
    MalformedMessage,
    MeshError,
    OutputMismatch,
    PeerUnavailable,
    Replayed,
    TooLarge,
    UnknownModel,
)
from mesh.net.health import HealthList

pytestmark = pytest.mark.unit


class Health:
    """The health list on a clock the test moves (as the networks hold one)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.list = HealthList(base_backoff=2.0, max_backoff=60.0)

    def is_healthy(self, peer_id: str) -> bool:
        return not self.list.is_dead(peer_id, now=self.now)

    def consecutive_failures(self, peer_id: str) -> int:
        return self.list.failures(peer_id)


def _book() -> tuple[PeerBook, Health]:
    health = Health()
    return PeerBook(health), health


def test_prefers_less_loaded_peer_at_equal_latency() -> None:
    book, _ = _book()
    book.success("a", 20.0)
    book.success("b", 20.0)
    busy, idle = Load(7, 8), Load(1, 8)
    assert book.score("a", busy) > book.score("b", idle)
    assert book.choose([("a", busy), ("b", idle)]) == "b"


def test_prefers_lower_latency_at_equal_load() -> None:
    book, _ = _book()
    book.success("far", 200.0)
    book.success("near", 10.0)
    load = Load(2, 8)
    picks = {book.choose([("far", load), ("near", load)]) for _ in range(20)}
    assert picks == {"near"}


def test_latency_is_an_ewma() -> None:
    book, _ = _book()
    book.success("a", 100.0)
    book.success("a", 0.0)
    rtt = book.stats("a").rtt_ms
    assert rtt is not None and 0.0 < rtt < 100.0


def test_a_peer_in_backoff_is_chosen_only_when_nothing_else_is_left() -> None:
    book, health = _book()
    book.success("a", 10.0)
    book.success("b", 50.0)
    load = Load(0, 8)
    health.list.record_failure("a", now=0.0)
    health.now = 1.0
    assert book.choose([("a", load), ("b", load)]) == "b"
    assert book.choose([("a", load)]) == "a"  # still better than nothing


def test_recent_failures_count_after_the_backoff_and_reset_on_success() -> None:
    book, health = _book()
    book.success("a", 10.0)
    book.success("b", 50.0)
    load = Load(0, 8)
    health.list.record_failure("a", now=0.0)
    health.now = 10.0  # out of its 2 s backoff: live again, but a failure behind it
    assert health.is_healthy("a")
    assert book.choose([("a", load), ("b", load)]) == "b"
    health.list.record_success("a")
    assert book.choose([("a", load), ("b", load)]) == "a"


def test_our_own_in_flight_tasks_count_as_load() -> None:
    book, _ = _book()
    load = Load(0, 4)
    for peer in ("a", "b"):
        book.success(peer, 10.0)
    for _ in range(3):
        book.started("a")
    assert book.choose([("a", load), ("b", load)]) == "b"
    for _ in range(3):
        book.finished("a")
    assert book.stats("a").in_flight == 0


def test_near_equal_peers_share_the_work() -> None:
    book, _ = _book()
    rng = random.Random(7)
    candidates = [(p, Load(1, 8)) for p in ("a", "b", "c")]
    for p, _ in candidates:
        book.success(p, 10.0)
    picks = [book.choose(candidates, rng=rng) for _ in range(60)]
    assert set(picks) == {"a", "b", "c"}


def test_exclusion_and_exhaustion() -> None:
    book, _ = _book()
    candidates = [("a", None), ("b", None)]
    assert book.choose(candidates, exclude={"a"}) == "b"
    assert book.choose(candidates, exclude={"a", "b"}) is None


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (Busy(retry_after_ms=5), Failure.BUSY),
        (PeerUnavailable("x"), Failure.UNREACHABLE),
        (DeadlineExceeded("x"), Failure.UNREACHABLE),
        (InternalError("x"), Failure.WORKER_FAULT),
        (UnknownModel("x"), Failure.NOT_HERE),
        (Replayed("x"), Failure.NOT_HERE),
        (OutputMismatch("x"), Failure.LIED),
        (CommitmentMismatch("x"), Failure.LIED),
        (BadSignature("x"), Failure.FATAL),
        (Expired("x"), Failure.FATAL),
        (InvalidInput("x"), Failure.REFUSED),
        (MalformedMessage("x"), Failure.FATAL),
        (TooLarge("x"), Failure.FATAL),
    ],
)
def test_what_each_failure_means(exc: MeshError, kind: Failure) -> None:
    assert classify(exc) is kind
    assert kind.retryable is (kind is not Failure.FATAL)


def test_attempt_timeout_leaves_time_for_others() -> None:
    policy = RetryPolicy(attempt_timeout_s=10.0, min_attempt_s=1.0, share_when_others=0.5)
    assert policy.attempt_timeout(30.0, others_left=False) == 10.0
    assert policy.attempt_timeout(8.0, others_left=True) == 4.0
    assert policy.attempt_timeout(1.5, others_left=True) == 1.0
    assert policy.attempt_timeout(0.5, others_left=True) == 0.5
    assert policy.attempt_timeout(0.0, others_left=False) == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"min_attempt_s": 0.0},
        {"min_attempt_s": 20.0, "attempt_timeout_s": 10.0},
        {"share_when_others": 0.0},
        {"share_when_others": 1.5},
    ],
)
def test_a_bad_retry_policy_is_a_config_error(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**bad)  # type: ignore[arg-type]
