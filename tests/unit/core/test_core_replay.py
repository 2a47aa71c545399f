"""Replay cache and task admission, with explicit times."""

from __future__ import annotations

import tracemalloc

import pytest
from core_samples import NOW_MS, WORKER, signed_task

from mesh.core.replay import (
    DEFAULT_REPLAY_ENTRIES,
    REPLAY_WINDOW_S,
    ReplayCache,
    admit_task,
    start_rate,
)
from mesh.core.tokenbucket import TokenBucket
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


def test_entries_forgotten_within_a_second_after_expiry() -> None:
    cache = ReplayCache(10)
    task = signed_task()
    cache.check_and_add(task, NOW_MS)
    cache.evict(NOW_MS + 60_000)  # still live at its expiry instant
    assert len(cache) == 1
    expiry_second_ends = (task.message.expires_ms // 1000 + 1) * 1000
    cache.evict(expiry_second_ends - 1)  # swept by expiry second, never early
    assert len(cache) == 1
    cache.evict(expiry_second_ends)
    assert len(cache) == 0


def test_full_of_live_entries_is_busy_not_forgetful() -> None:
    cache = ReplayCache(2)
    cache.check_and_add(signed_task(nonce=bytes([1]) * 16), NOW_MS)
    cache.check_and_add(signed_task(nonce=bytes([2]) * 16, expires_ms=NOW_MS + 90_000), NOW_MS)
    with pytest.raises(Busy) as info:
        cache.check_and_add(signed_task(nonce=bytes([3]) * 16), NOW_MS + 10_000)
    # When the first entry's expiry second is swept.
    first_swept = ((NOW_MS + 60_000) // 1000 + 1) * 1000
    assert info.value.retry_after_ms == first_swept - (NOW_MS + 10_000)
    # Both earlier tasks are still remembered.
    with pytest.raises(Replayed):
        cache.check_and_add(signed_task(nonce=bytes([1]) * 16), NOW_MS + 10_000)
    # Once the first expires there is room again.
    cache.check_and_add(
        signed_task(nonce=bytes([3]) * 16, expires_ms=NOW_MS + 120_000), first_swept
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


def test_check_alone_records_nothing() -> None:
    cache = ReplayCache(10)
    task = signed_task()
    cache.check(task, NOW_MS)
    assert len(cache) == 0
    cache.check_and_add(task, NOW_MS)
    with pytest.raises(Replayed):
        cache.check(task, NOW_MS)


def test_start_rate_keeps_the_cache_from_filling_within_the_window() -> None:
    for entries in (1_000, 100_000, DEFAULT_REPLAY_ENTRIES):
        rate = start_rate(entries)
        # The arithmetic of the module docstring: burst + rate x (window + 1 s) <= entries.
        assert rate.burst + rate.rate * (REPLAY_WINDOW_S + 1) <= entries
    assert REPLAY_WINDOW_S == 630


def test_a_full_window_at_the_highest_start_rate_fits() -> None:
    # Simulate the worst case: tasks with the longest window start as fast as the
    # bucket lets them, for longer than the window; the cache never answers Busy.
    entries = 2_000
    rate = start_rate(entries)
    bucket = TokenBucket(rate=rate.rate, burst=rate.burst)
    cache = ReplayCache(entries)
    window_ms = 600_000
    now_ms = NOW_MS
    started = 0
    while now_ms < NOW_MS + 2 * 630_000:
        while bucket.take(now_ms / 1000):
            task = signed_task(
                nonce=started.to_bytes(16, "big"), created_ms=now_ms, expires_ms=now_ms + window_ms
            )
            cache.check_and_add(task, now_ms)  # never Busy
            started += 1
        now_ms += 250
    assert started > 1.5 * entries  # more than the cache holds: the window turned over
    assert len(cache) <= entries


def test_an_entry_costs_under_100_bytes() -> None:
    cache = ReplayCache(100_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(50_000):
            task = signed_task(nonce=i.to_bytes(16, "big"), expires_ms=NOW_MS + 1000 * (i % 600))
            cache.check_and_add(task, NOW_MS)
            del task
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / 50_000
    finally:
        tracemalloc.stop()
    assert per_entry < 100, per_entry
