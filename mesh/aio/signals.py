"""Stop gracefully on the first SIGINT/SIGTERM, at once on the second.

``mesh node`` (drain, then exit) and ``mesh gateway`` (finish the requests in
flight, then exit) share this: the first signal sets ``stop`` so the service
winds down by itself; a second one cancels ``scope`` for an immediate exit.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator

import trio

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def stop_on_signals(
    signals: AsyncIterator[int], stop: trio.Event, scope: trio.CancelScope, *, winding_down: str
) -> None:
    """Watch ``signals``: the first sets ``stop``, the second cancels ``scope``.

    Args:
        signals: from ``trio.open_signal_receiver(*STOP_SIGNALS)``.
        stop: what the service waits on to wind down.
        scope: cancelled for an immediate stop.
        winding_down: what the first signal starts, for the log ("draining", ...).
    """
    async for signum in signals:
        if not stop.is_set():
            logger.info("signal %d: %s (again to stop at once)", signum, winding_down)
            stop.set()
        else:
            logger.warning("signal %d again: stopping now", signum)
            scope.cancel()
            return
