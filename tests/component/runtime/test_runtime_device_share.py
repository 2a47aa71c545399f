"""The device shared between lanes by device time used (mesh.runtime.device_share)."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from mesh.runtime.device_share import MAX_LEAD_S, SharedDevice

pytestmark = pytest.mark.component


async def _keep_using(device: SharedDevice, key: str, turn_s: float, log: list[str]) -> None:
    handle = device.lane(key)
    while True:
        async with handle:
            log.append(key)
            await trio.sleep(turn_s)


async def test_a_light_lane_goes_first_and_a_heavy_one_cannot_hold_it_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    device = SharedDevice()
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_keep_using, device, "heavy", 0.5, log)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_keep_using, device, "light", 0.01, log)
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    # Shares of device time, not of turns: both lanes near half of it.
    assert device.used("light") == pytest.approx(device.used("heavy"), abs=MAX_LEAD_S + 0.5)
    # The light lane never waited more than one heavy turn: no two heavy turns in a row.
    after_first = log[1:]  # the heavy lane's first turn began before the light lane came
    assert all(not (a == b == "heavy") for a, b in itertools.pairwise(after_first))


async def test_credit_from_a_quiet_time_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    device = SharedDevice()
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_keep_using, device, "early", 0.1, log)
        await trio.sleep(30)  # "early" alone for 30 s: 30 s used
        nursery.start_soon(_keep_using, device, "late", 0.1, log)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    late_start = log.index("late")
    window = log[late_start : late_start + 20]
    # "late" is ahead by at most MAX_LEAD_S (10 turns of 0.1 s), then they alternate.
    assert window.count("early") >= 4
