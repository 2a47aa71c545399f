"""For testing code built on the mesh, without real peers (as httpx has MockTransport).

Run a client, or a node, over an in-process network on trio's clock::

    import trio, trio.testing
    from mesh import AsyncClient
    from mesh.testing import MemoryHub, fixed_wall_clock

    async def main():
        hub = MemoryHub()
        async with hub.join("client-1") as net, AsyncClient(
            net, wall_clock=fixed_wall_clock(1_700_000_000.0)
        ) as client:
            ...

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

:class:`MemoryHub` injects faults (``kill``, ``freeze``, ``drop``) into the peers
that joined it. :class:`Network` and :class:`TaskRunner` are the protocols a
custom network or model runner implements to plug into :class:`mesh.AsyncClient`
and :class:`mesh.Node`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mesh.aio.clock import WallClock, trio_wall_clock
from mesh.net.interface import Network, PeerAddr, RequestHandler
from mesh.net.memory import MemoryHub, MemoryNetwork
from mesh.node.handler import BlockingCall
from mesh.node.runner import ExecutionLike, TaskRunner
from mesh.node.service import NetworkFactory, RunnerFactory

__all__ = [
    "BlockingCall",
    "ExecutionLike",
    "MemoryHub",
    "MemoryNetwork",
    "Network",
    "NetworkFactory",
    "PeerAddr",
    "RequestHandler",
    "RunnerFactory",
    "TaskRunner",
    "WallClock",
    "fixed_wall_clock",
    "inline_blocking",
]

T = TypeVar("T")


def fixed_wall_clock(epoch_offset_s: float) -> WallClock:
    """Epoch milliseconds that follow trio's clock from ``epoch_offset_s``.

    On ``trio.testing.MockClock`` virtual time then drives task and record expiry.
    """
    return trio_wall_clock(offset_s=epoch_offset_s)


async def inline_blocking(fn: Callable[[], T]) -> T:
    """A :data:`BlockingCall` that runs ``fn`` on the event loop.

    A node hands its blocking receipt-log appends to a worker thread by default;
    on a MockClock a thread lets virtual time jump past the append, so tests pass
    this to :class:`mesh.Node` as ``blocking=``.
    """
    return fn()
