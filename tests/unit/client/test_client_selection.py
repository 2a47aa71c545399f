"""Peer scoring: load, measured latency, recent failures; choice among near-equals."""

from __future__ import annotations

import random

import pytest

from mesh.client.retry import RetryPolicy, failure_weight, is_retryable
from mesh.client.selection import FAILURE_HALF_LIFE_S, Load, PeerBook
from mesh.errors import (
    BadSignature,
    Busy,
    DeadlineExceeded,
    Expired,
    InternalError,
    InvalidInput,
    OutputMismatch,
    PeerUnavailable,
    UnknownModel,
)

pytestmark = pytest.mark.unit


def test_prefers_less_loaded_peer_at_equal_latency() -> None:
    book = PeerBook()
    book.success("a", 20.0)
    book.success("b", 20.0)
    busy, idle = Load(7, 8), Load(1, 8)
    assert book.score("a", busy, now=0) > book.score("b", idle, now=0)
    assert book.choose([("a", busy), ("b", idle)], now=0) == "b"


def test_prefers_lower_latency_at_equal_load() -> None:
    book = PeerBook()
    book.success("far", 200.0)
    book.success("near", 10.0)
    load = Load(2, 8)
    picks = {book.choose([("far", load), ("near", load)], now=0) for _ in range(20)}
    assert picks == {"near"}


def test_latency_is_an_ewma() -> None:
    book = PeerBook()
    book.success("a", 100.0)
    book.success("a", 0.0)
    rtt = book.stats("a").rtt_ms
    assert rtt is not None and 0.0 < rtt < 100.0


def test_recent_failures_count_and_decay() -> None:
    book = PeerBook()
    book.success("a", 10.0)
    book.success("b", 50.0)
    load = Load(0, 8)
    book.failure("a", now=0.0)
    assert book.choose([("a", load), ("b", load)], now=1.0) == "b"
    later = 20 * FAILURE_HALF_LIFE_S
    assert book.choose([("a", load), ("b", load)], now=later) == "a"


def test_our_own_in_flight_tasks_count_as_load() -> None:
    book = PeerBook()
    load = Load(0, 4)
    for peer in ("a", "b"):
        book.success(peer, 10.0)
    for _ in range(3):
        book.started("a")
    assert book.choose([("a", load), ("b", load)], now=0) == "b"
    for _ in range(3):
        book.finished("a")
    assert book.stats("a").in_flight == 0


def test_near_equal_peers_share_the_work() -> None:
    book = PeerBook()
    rng = random.Random(7)
    candidates = [(p, Load(1, 8)) for p in ("a", "b", "c")]
    for p, _ in candidates:
        book.success(p, 10.0)
    picks = [book.choose(candidates, now=0, rng=rng) for _ in range(60)]
    assert set(picks) == {"a", "b", "c"}


def test_exclusion_and_exhaustion() -> None:
    book = PeerBook()
    candidates = [("a", None), ("b", None)]
    assert book.choose(candidates, now=0, exclude={"a"}) == "b"
    assert book.choose(candidates, now=0, exclude={"a", "b"}) is None


def test_a_lying_peer_is_avoided_for_long() -> None:
    book = PeerBook()
    book.success("liar", 1.0)
    book.success("honest", 300.0)
    book.failure("liar", now=0.0, weight=failure_weight(OutputMismatch("x")))
    load = Load(0, 8)
    assert book.choose([("liar", load), ("honest", load)], now=3 * FAILURE_HALF_LIFE_S) == (
        "honest"
    )


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (Busy(retry_after_ms=5), True),
        (PeerUnavailable("x"), True),
        (DeadlineExceeded("x"), True),
        (InternalError("x"), True),
        (UnknownModel("x"), True),
        (OutputMismatch("x"), True),
        (BadSignature("x"), False),
        (Expired("x"), False),
        (InvalidInput("x"), False),
    ],
)
def test_which_errors_are_retried(exc: Exception, retry: bool) -> None:
    assert is_retryable(exc) is retry  # type: ignore[arg-type]


def test_attempt_timeout_leaves_time_for_others() -> None:
    policy = RetryPolicy(attempt_timeout_s=10.0, min_attempt_s=1.0, share_when_others=0.5)
    assert policy.attempt_timeout(30.0, others_left=False) == 10.0
    assert policy.attempt_timeout(8.0, others_left=True) == 4.0
    assert policy.attempt_timeout(1.5, others_left=True) == 1.0
    assert policy.attempt_timeout(0.5, others_left=True) == 0.5
    assert policy.attempt_timeout(0.0, others_left=False) == 0.0
