"""The peer-health list: backoff grows with failures, resets on success."""

from __future__ import annotations

import pytest

from mesh.errors import ConfigError
from mesh.net.health import HealthList

pytestmark = pytest.mark.unit


def test_a_failed_peer_is_dead_for_the_base_backoff() -> None:
    health = HealthList(base_backoff=2.0, max_backoff=60.0)
    assert not health.is_dead("p", now=0.0)
    assert health.record_failure("p", now=10.0) == 12.0
    assert health.is_dead("p", now=11.9)
    assert not health.is_dead("p", now=12.0)
    assert not health.is_dead("q", now=11.0)


def test_backoff_doubles_and_is_capped() -> None:
    health = HealthList(base_backoff=1.0, max_backoff=5.0)
    untils = [health.record_failure("p", now=100.0) for _ in range(5)]
    assert untils == [101.0, 102.0, 104.0, 105.0, 105.0]
    assert health.failures("p") == 5


def test_success_resets_the_backoff() -> None:
    health = HealthList(base_backoff=1.0, max_backoff=100.0)
    for _ in range(4):
        health.record_failure("p", now=0.0)
    health.record_success("p")
    assert health.failures("p") == 0
    assert not health.is_dead("p", now=0.0)
    assert health.record_failure("p", now=0.0) == 1.0


def test_dead_peers_lists_only_those_in_backoff() -> None:
    health = HealthList(base_backoff=1.0, max_backoff=10.0)
    health.record_failure("a", now=0.0)
    health.record_failure("b", now=0.5)
    assert health.dead_peers(now=0.9) == ["a", "b"]
    assert health.dead_peers(now=1.2) == ["b"]
    assert health.dead_peers(now=1.5) == []


def test_the_list_is_bounded_dropping_the_stalest() -> None:
    health = HealthList(max_entries=2)
    for peer in ("a", "b", "c"):
        health.record_failure(peer, now=0.0)
    assert health.failures("a") == 0
    assert health.failures("c") == 1


def test_huge_failure_counts_do_not_overflow() -> None:
    health = HealthList(base_backoff=1.0, max_backoff=300.0)
    for _ in range(200):
        until = health.record_failure("p", now=0.0)
    assert until == 300.0


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        HealthList(base_backoff=0.0)
    with pytest.raises(ConfigError):
        HealthList(base_backoff=10.0, max_backoff=1.0)
