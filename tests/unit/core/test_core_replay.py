"""Replay cache and task admission, with explicit times."""

from __future__ import annotations

import pytest
from core_samples import NOW_MS, WORKER, signed_task

from mesh.core.replay import ReplayCache, admit_task
from mesh.errors import Busy, ConfigError, Expired, MalformedMessage, Replayed

pytestmark = pytest.mark.unit


def test_second_copy_is_replayed() -> None:
    cache = ReplayCache(10)
    task = signed_task()
    cache.check_and_add(task, NOW_MS)
    assert task in cache and len(cache) == 1
    with pytest.raises(Replayed):
        cache.check_and_add(task, NOW_MS + 1)


def test_same_nonce_other_task_is_replayed() -> None:
    # The key is (client, nonce): a re-signed task with the same nonce is a replay too.
    cache = ReplayCache(10)
    cache.check_and_add(signed_task(), NOW_MS)
    with pytest.raises(Replayed):
        cache.check_and_add(signed_task(params={"seed": 1}), NOW_MS)
    cache.check_and_add(signed_task(nonce=bytes(16)), NOW_MS)


def test_entries_forgotten_after_expiry() -> None:
    cache = ReplayCache(10)
    task = signed_task()
    cache.check_and_add(task, NOW_MS)
    cache.evict(NOW_MS + 60_000)  # still live at its expiry instant
    assert len(cache) == 1
    cache.evict(NOW_MS + 60_001)
    assert len(cache) == 0


def test_full_of_live_entries_is_busy_not_forgetful() -> None:
    cache = ReplayCache(2)
    cache.check_and_add(signed_task(nonce=bytes([1]) * 16), NOW_MS)
    cache.check_and_add(signed_task(nonce=bytes([2]) * 16, expires_ms=NOW_MS + 90_000), NOW_MS)
    with pytest.raises(Busy) as info:
        cache.check_and_add(signed_task(nonce=bytes([3]) * 16), NOW_MS + 10_000)
    assert info.value.retry_after_ms == 50_001
    # Both earlier tasks are still remembered.
    with pytest.raises(Replayed):
        cache.check_and_add(signed_task(nonce=bytes([1]) * 16), NOW_MS + 10_000)
    # Once the first expires there is room again.
    cache.check_and_add(
        signed_task(nonce=bytes([3]) * 16, expires_ms=NOW_MS + 120_000), NOW_MS + 60_001
    )


def test_invalid_size() -> None:
    with pytest.raises(ConfigError):
        ReplayCache(0)


def test_admit_task_checks_in_order() -> None:
    cache = ReplayCache(10)
    task = signed_task()
    admit_task(task, now_ms=NOW_MS, cache=cache, worker_key=WORKER.public_key)
    with pytest.raises(Replayed):
        admit_task(task, now_ms=NOW_MS, cache=cache)
    expired = signed_task(nonce=bytes([5]) * 16)
    with pytest.raises(Expired):
        admit_task(expired, now_ms=NOW_MS + 60_001, cache=cache)
    assert expired not in cache  # refused tasks do not take a slot


def test_admit_task_refuses_other_target() -> None:
    cache = ReplayCache(10)
    task = signed_task(target=bytes(32))
    with pytest.raises(MalformedMessage, match="another worker"):
        admit_task(task, now_ms=NOW_MS, cache=cache, worker_key=WORKER.public_key)
    admit_task(
        signed_task(target=WORKER.public_key),
        now_ms=NOW_MS,
        cache=cache,
        worker_key=WORKER.public_key,
    )
