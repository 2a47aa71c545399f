"""A node's run-until-signal lifecycle: serve until SIGINT/SIGTERM, then drain.

The first SIGINT or SIGTERM stops accepting tasks (new ones are answered
``busy`` so clients go elsewhere) and lets tasks in flight finish within the
node's drain timeout; a second one stops at once. ``mesh node`` and a
testnet's forked node processes both run this; what each does once the node
is ready (print a line, report to a launcher) is the caller's ``on_ready``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import trio

from mesh.aio.signals import STOP_SIGNALS, stop_on_signals
from mesh.node.config import NodeConfig
from mesh.node.service import NetworkFactory, Node, RunnerFactory, run_node

logger = logging.getLogger(__name__)


async def serve_until_signal(
    config: NodeConfig,
    *,
    network_factory: NetworkFactory,
    runner_factory: RunnerFactory,
    on_ready: Callable[[Node], None],
) -> None:
    """Run a node until SIGINT/SIGTERM, calling ``on_ready`` once it serves; then drain."""
    stop = trio.Event()
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def node_then_stop(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                await run_node(
                    config,
                    network_factory=network_factory,
                    runner_factory=runner_factory,
                    stop=stop,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()  # drained: stop watching signals

            nursery.start_soon(
                functools.partial(stop_on_signals, winding_down="draining"),
                signals,
                stop,
                nursery.cancel_scope,
            )
            on_ready(await nursery.start(node_then_stop))
