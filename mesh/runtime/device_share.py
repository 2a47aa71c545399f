"""The device, shared fairly between the model lanes by the compute time each used.

One forward pass (or one decode step) runs at a time in a process: the device
is one resource. A first-come lock gives each lane a turn in arrival order, so
a heavy model (a long static batch, or a decode step of many sequences) takes
most of the device whenever its lane keeps asking, and a light model's tasks
wait behind it. :class:`SharedDevice` hands the next turn to the waiting lane
that has used the least device time so far (measured: how long it held its
turns). Credit is bounded: a lane that starts asking is brought to within
``MAX_LEAD_S`` of the most-used lane asking, so a lane that was light for an
hour cannot then hold the device for minutes. A turn that has begun is never
cut short: a light task waits at most one turn of a heavy lane.

Each lane gets its handle with :meth:`SharedDevice.lane` and uses it as
``async with handle:`` (the shape of the ``trio.CapacityLimiter`` it replaces).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from types import TracebackType

import trio

# A lane may have used at most this much less device time than the busiest lane
# competing with it: enough to let light tasks through first, never a monopoly.
MAX_LEAD_S = 1.0


@dataclass(eq=False, slots=True)
class _Waiter:
    key: Hashable
    turn: trio.Event = field(default_factory=trio.Event)


class SharedDevice:
    """One device; turns go to the waiting lane that used it least."""

    def __init__(self) -> None:
        self._used: dict[Hashable, float] = {}  # seconds each lane held the device
        self._waiting: list[_Waiter] = []
        self._busy = False
        self._holder: Hashable | None = None

    def lane(self, key: Hashable) -> LaneTurn:
        """The handle through which lane ``key`` takes its turns."""
        return LaneTurn(self, key)

    def used(self, key: Hashable) -> float:
        """Seconds lane ``key`` has held the device."""
        return self._used.get(key, 0.0)

    async def _acquire(self, key: Hashable) -> None:
        competing = [w.key for w in self._waiting]
        if self._holder is not None:
            competing.append(self._holder)
        own = self._used.get(key, 0.0)
        if competing:
            self._used[key] = max(own, max(self._used[k] for k in competing) - MAX_LEAD_S)
        else:
            self._used[key] = own
        if not self._busy:
            self._busy = True
            self._holder = key
            await trio.lowlevel.checkpoint()
            return
        waiter = _Waiter(key)
        self._waiting.append(waiter)
        try:
            await waiter.turn.wait()
        except BaseException:
            if waiter.turn.is_set():
                self._release()  # handed the device as it was cancelled: pass it on
            else:
                self._waiting.remove(waiter)
            raise

    def _release(self) -> None:
        if not self._waiting:
            self._busy = False
            self._holder = None
            return
        # Least used first; ties in arrival order.
        best = min(range(len(self._waiting)), key=lambda i: (self._used[self._waiting[i].key], i))
        waiter = self._waiting.pop(best)
        self._holder = waiter.key
        waiter.turn.set()  # the device passes straight to it

    def _charge(self, key: Hashable, seconds: float) -> None:
        self._used[key] = self._used.get(key, 0.0) + seconds


class LaneTurn:
    """``async with``: one turn of a lane on the shared device, charged by its length."""

    def __init__(self, device: SharedDevice, key: Hashable) -> None:
        self._device = device
        self._key = key
        self._since = 0.0

    async def __aenter__(self) -> None:
        await self._device._acquire(self._key)
        self._since = trio.current_time()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._device._charge(self._key, trio.current_time() - self._since)
        self._device._release()
