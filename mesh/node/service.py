"""The node: task handler, runner and advertiser in one nursery (``async with Node(...)``).

A node owns one nursery: the runner's loops and the advertiser run in it, and
the task handler answers requests arriving through the network. Leaving the
``async with`` block normally *drains*: new tasks are answered ``busy`` (so
clients go elsewhere), tasks in flight finish within ``drain_timeout_s``, then
everything is cancelled. Signals are the CLI's business, not this module's.

:func:`run_node` builds the network and the runner from a :class:`NodeConfig`
through factories, so the CLI, a testnet launcher (forked processes) and
component tests (memory network, fake runner) share one code path.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from mesh.aio.clock import WallClock, trio_wall_clock
from mesh.aio.groups import unwrap_single_error
from mesh.aio.ratelog import flush_all
from mesh.core.capacity import CAPACITY_NAMESPACE, capacity_validator
from mesh.core.replay import ReplayCache, start_rate
from mesh.core.tokenbucket import TokenBucket
from mesh.errors import ConfigError
from mesh.files.keylock import KeyLock
from mesh.net.heap import trim_heap
from mesh.net.interface import TASK_PROTOCOL, Network
from mesh.node import ops, pricing
from mesh.node.admission import Admission, ThroughputMeter
from mesh.node.advertiser import Advertiser
from mesh.node.checks import CheckingRunner
from mesh.node.config import NodeConfig
from mesh.node.departure import announce_departure
from mesh.node.dialback import DIALBACK_PROTOCOL, DialbackServer, Reachability, ReachabilityCheck
from mesh.node.gate import RunGate
from mesh.node.handler import BlockingCall, TaskHandler
from mesh.node.lies import advertised_depth, apply_lie
from mesh.node.lifecycle import TaskState, TaskTable
from mesh.node.metrics import NodeMetrics
from mesh.node.netmetrics import MeteredNetwork
from mesh.node.receipt_log import ReceiptLog
from mesh.node.runner import TaskRunner
from mesh.node.verdict_relay import relay_verdicts

if TYPE_CHECKING:
    # The trio-stubs package (pulled in by libp2p) shadows trio's own annotations
    # for mypy and declares TaskStatus in trio_typing.
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)

NetworkFactory = Callable[[NodeConfig], AbstractAsyncContextManager[Network]]
RunnerFactory = Callable[[NodeConfig], Awaitable[TaskRunner]]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A snapshot of a running node (:meth:`Node.status`).

    Attributes:
        peer_id: the node's PeerID.
        models: served model names and their hex model_roots.
        in_flight: tasks admitted and not yet answered.
        running: of those, tasks whose batch is running now.
        capacity: tasks in flight before new ones are answered busy.
        answered: replies sent, by code ("ok" or an error code).
        adverts_published: capacity records stored in the DHT so far.
        draining: True once the node stopped admitting tasks.
        uptime_s: seconds since the node started serving.
        advertised: the addresses others dial (in its capacity record).
        connected_peers: peers with an open connection now.
        reachability: the latest self-check (``Reachability.to_json``), None before one.
        ready: serving and advertised (what ``/healthz`` reports).
    """

    peer_id: str
    models: dict[str, str]
    in_flight: int
    running: int
    capacity: int
    answered: dict[str, int]
    adverts_published: int
    draining: bool
    uptime_s: float = 0.0
    advertised: tuple[str, ...] = ()
    connected_peers: int = 0
    reachability: dict[str, object] | None = None
    ready: bool = False

    def to_json(self) -> dict[str, object]:
        """The status as JSON (``/status``, ``mesh status --json``)."""
        doc = {name: getattr(self, name) for name in self.__dataclass_fields__}
        doc["advertised"] = list(self.advertised)
        return doc


class Node:
    """A running node. Use as ``async with Node(config, network=..., runner=...) as node:``.

    Args:
        config: the node's configuration.
        network: the network to serve on (already running).
        runner: runs the tasks (the runtime executor, or a fake in tests).
        wall_clock: epoch milliseconds; defaults to trio's clock plus the real offset.
        blocking: how to call blocking receipt-log appends (default: a worker
            thread; tests on a fake clock pass :func:`mesh.testing.inline_blocking`).
        memory_free_mb: free memory to advertise (the runtime's figure).
        receipt_log: the node's receipt log, opened (and locked) already by
            :func:`run_node` before the network; opened here when None.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        network: Network,
        runner: TaskRunner,
        wall_clock: WallClock | None = None,
        blocking: BlockingCall | None = None,
        memory_free_mb: Callable[[], int] = lambda: 0,
        receipt_log: ReceiptLog | None = None,
    ) -> None:
        self.config = config
        # Check tasks (another worker's generation to check) are answered by the
        # runner's forward pass; a researcher's lying node alters answers after it.
        runner = apply_lie(CheckingRunner(runner), config.lie)
        self._runner = runner
        self.metrics = NodeMetrics(models=lambda: runner.models)
        # Every DHT, gossip and request operation of the node is counted there.
        self._network: Network = MeteredNetwork(network, self.metrics)
        network = self._network
        self._wall_clock = wall_clock or trio_wall_clock()
        self._log = receipt_log or open_receipt_log(config)
        self._meter = ThroughputMeter()
        self._table = TaskTable()
        capacity = min(config.max_queue, runner.queue_capacity())
        self._admission = Admission(
            capacity=max(1, capacity),
            per_client=config.max_in_flight_per_client,
            table=self._table,
            meter=self._meter,
        )
        # Tasks start no faster than the replay cache can remember for a whole
        # window (mesh.core.replay: entries <= burst + rate x window).
        rate = start_rate(config.replay_entries)
        self._gate = RunGate(
            slots=config.max_batch,
            start=TokenBucket(rate=rate.rate, burst=rate.burst),
            table=self._table,
        )
        self._handler = TaskHandler(
            identity=config.identity,
            runner=runner,
            receipt_log=self._log,
            replay=ReplayCache(config.replay_entries),
            admission=self._admission,
            table=self._table,
            meter=self._meter,
            wall_clock=self._wall_clock,
            gate=self._gate,
            blocking=blocking,
            observer=self.metrics,
            receipt_claims=pricing.receipt_claims(config.price_micro),
        )
        self._advertiser = Advertiser(
            config=config,
            network=network,
            runner=runner,
            wall_clock=self._wall_clock,
            throughput_milli=self._throughput_milli,
            queue_depth=advertised_depth(config.lie, lambda: self._admission.in_flight),
            queue_capacity=lambda: self._admission.capacity,
            memory_free_mb=memory_free_mb,
            addrs=self.advertised_addrs,
            draining=lambda: self._admission.closed,
        )
        self._dialback = DialbackServer(network.probe_listener)
        self._reachability = ReachabilityCheck(
            network, addrs=self.advertised_addrs, wall_clock=self._wall_clock
        )
        self._started: float | None = None
        self.http_url: str | None = None  # the HTTP endpoint once it serves
        ops.register_gauges(
            self.metrics,
            peer_id=network.peer_id,
            queue_depth=lambda: self._admission.in_flight,
            queue_capacity=lambda: self._admission.capacity,
            running=lambda: self._table.count(TaskState.RUNNING),
            connected_peers=lambda: len(self._network.connected_peers()),
            ready=lambda: self.ready,
            draining=lambda: self._admission.closed,
            reachable=lambda: None if self.reachability is None else self.reachability.status,
        )
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def peer_id(self) -> str:
        return self._network.peer_id

    @property
    def model_names(self) -> list[str]:
        """Names of the models this node serves."""
        return list(self._runner.models.values())

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs (with ``/p2p/<peer id>``) the node is bound to (maybe ``0.0.0.0``)."""
        return self._network.listen_addrs()

    def advertised_addrs(self) -> list[str]:
        """Full multiaddrs others dial: ``--announce``, else the listen addresses with
        ``0.0.0.0`` replaced by this host's interface addresses (what the capacity
        record and the ready line carry)."""
        return ops.advertised_addrs(self.config.announce, self.listen_addrs(), self.peer_id)

    @property
    def ready(self) -> bool:
        """Serving and advertised: admitting tasks, and a capacity record was stored."""
        return (
            self._started is not None
            and not self._admission.closed
            and (self._advertiser.published > 0)
        )

    @property
    def reachability(self) -> Reachability | None:
        """The latest reachability self-check (None before the first, or when off)."""
        return self._reachability.latest

    @property
    def reachability_check(self) -> ReachabilityCheck:
        return self._reachability

    def status(self) -> NodeStatus:
        """What this node is doing now (a snapshot)."""
        reach = self._reachability.latest
        return NodeStatus(
            peer_id=self.peer_id,
            models={name: root.hex() for root, name in self._runner.models.items()},
            in_flight=self._table.count(),
            running=self._table.count(TaskState.RUNNING),
            capacity=self._admission.capacity,
            answered=dict(self._handler.answered),
            adverts_published=self._advertiser.published,
            draining=self._admission.closed,
            uptime_s=0.0 if self._started is None else trio.current_time() - self._started,
            advertised=tuple(self.advertised_addrs()),
            connected_peers=len(self._network.connected_peers()),
            reachability=None if reach is None else reach.to_json(),
            ready=self.ready,
        )

    def _throughput_milli(self) -> int:
        rate = self._meter.rate(trio.current_time())
        return 0 if rate is None else int(rate * 1000)

    async def __aenter__(self) -> Node:
        self._meter.start(trio.current_time())
        self._network.set_record_validator(CAPACITY_NAMESPACE, capacity_validator(self._wall_clock))
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack, self._nursery = stack, nursery
        nursery.start_soon(self._runner.run_forever)
        nursery.start_soon(self._gate.run)
        nursery.start_soon(_housekeeping, self._table, self._meter)
        nursery.start_soon(relay_verdicts, self._network)
        if self.config.http_listen is not None:
            # Up before the models serve: /healthz/live answers while the node starts.
            await ops.start_http(self, nursery)
        # Serve before advertising: a client that finds us must get an answer.
        self._network.set_request_handler(TASK_PROTOCOL, self._handler.handle)
        self._network.set_request_handler(DIALBACK_PROTOCOL, self._dialback.handle)
        self._started = trio.current_time()
        await self._advertiser.advertise_once()
        nursery.start_soon(self._advertiser.run)
        if self.config.self_check:
            nursery.start_soon(self._reachability.run)
        logger.info("node %s serving %s", self.peer_id, ", ".join(self.model_names) or "nothing")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None and self._nursery is not None
        try:
            if exc is None:
                await self.drain()
        finally:
            self._nursery.cancel_scope.cancel()
            try:
                with unwrap_single_error():
                    result = await self._stack.__aexit__(exc_type, exc, tb)
            finally:
                self._log.close()
                ops.forget_http(self)
        return result

    async def drain(self, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (a drain bound, not a call deadline)
        """Stop admitting tasks and wait for those in flight; True when all finished.

        New tasks are answered ``busy`` meanwhile, so clients retry elsewhere.
        """
        leaving = not self._admission.closed
        self._admission.closed = True
        if leaving:
            # Tell the mesh first, so clients stop choosing us while tasks finish.
            await announce_departure(self._advertiser, self._network)
        limit = self.config.drain_timeout_s if timeout is None else timeout
        in_flight = self._table.count()
        if in_flight:
            logger.info("draining %d task(s), at most %.0f s", in_flight, limit)
        with trio.move_on_after(limit):
            await self._table.wait_idle()
            return True
        logger.warning("drain deadline passed with %d task(s) in flight", self._table.count())
        return False


async def run_node(
    config: NodeConfig,
    *,
    network_factory: NetworkFactory | None = None,
    runner_factory: RunnerFactory | None = None,
    stop: trio.Event | None = None,
    task_status: TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node until ``stop`` is set (then drain and return) or until cancelled.

    Args:
        config: the node's configuration.
        network_factory: opens the network; default :func:`libp2p_network_factory`.
        runner_factory: loads the models and returns the runner; default
            :func:`mesh.node.runtime_runner.load_runtime_runner` (imports torch).
        stop: set it to shut the node down gracefully (the CLI does on
            SIGINT/SIGTERM); None runs until cancelled (no drain).
        task_status: ``nursery.start(run_node, ...)`` returns the ready :class:`Node`.
    """
    if runner_factory is None:
        from mesh.node.runtime_runner import load_runtime_runner

        runner_factory = load_runtime_runner
    # Forward passes run in worker threads whose Python parts (sampling, batching
    # glue) hold the GIL; at CPython's default 5 ms switch interval, each turn of
    # the event loop may wait that long behind them, and a request takes several
    # turns. A node process is ours: switch more often (measured: a light task's
    # p50 behind a busy generation lane 3.3 -> 1.9 ms in-process).
    sys.setswitchinterval(NODE_SWITCH_INTERVAL_S)
    # The key's lock and the receipt log's come before anything else, the network
    # above all: a second node with this key (or this data dir) must fail at once,
    # never join the mesh under a PeerID that is already serving.
    with KeyLock.acquire(config.identity, what=f"data dir {config.data_dir}"):
        receipt_log = open_receipt_log(config)
        try:
            runner = await runner_factory(config)
            memory_free_mb = getattr(runner, "memory_free_mb", lambda: 0)
            async with (
                (network_factory or libp2p_network_factory)(config) as network,
                Node(
                    config,
                    network=network,
                    runner=runner,
                    memory_free_mb=memory_free_mb,
                    receipt_log=receipt_log,
                ) as node,
            ):
                task_status.started(node)
                await (stop if stop is not None else trio.Event()).wait()
                logger.info("node %s stopping", node.peer_id)
        finally:
            receipt_log.close()


def open_receipt_log(config: NodeConfig) -> ReceiptLog:
    """Make the data dir and open (and lock) the node's receipt log.

    Raises:
        ConfigError: the folder cannot be made, or the log is in use or unreadable.
        VerificationError: the log holds another worker's or a tampered chain.
    """
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data dir {config.data_dir}: {exc}") from exc
    return ReceiptLog.open(config.receipt_log_path, config.identity)


# The GIL switch interval of a node process (CPython's default is 5 ms).
NODE_SWITCH_INTERVAL_S = 0.0005
# How often the "N more suppressed" lines of rate-limited refusal logs are written.
LOG_FLUSH_S = 10.0


async def _housekeeping(table: TaskTable, meter: ThroughputMeter) -> None:
    """Every ``LOG_FLUSH_S``: write the counts of suppressed refusal lines (so a flood's
    size is never lost), and give freed heap back to the OS once tasks ran and none
    is in flight (glibc keeps what torch and the answers freed: measured +17-19 MiB
    after a burst of generation tasks, gone after a trim)."""
    ran = meter.completed
    while True:
        await trio.sleep(LOG_FLUSH_S)
        flush_all()
        if meter.completed != ran and not table.count():
            ran = meter.completed
            trim_heap()


def libp2p_network_factory(config: NodeConfig) -> AbstractAsyncContextManager[Network]:
    """Open the real libp2p network for ``config`` (imports libp2p only when called)."""
    from mesh.net.libp2p_net import open_libp2p_network

    return open_libp2p_network(
        identity_seed=config.identity.seed,
        listen=config.listen,
        announce=config.announce,
        bootstrap=config.bootstrap,
    )
