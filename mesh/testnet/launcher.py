"""A local testnet: N node processes on 127.0.0.1, forked from one parent.

The parent imports torch, libp2p and the runtime once and loads the models
(on CPU) before forking, so every node shares those pages copy-on-write and is
up in about a second (see :mod:`mesh.testnet.processes`). Node 0 starts first;
the rest start together, joining through it. Clients get the first
``BOOTSTRAP_NODES`` live nodes as their bootstrap list. The testnet is
*ready* when, from a fresh client on the DHT, every node is found as a provider
of every model and its signed capacity record validates.

The parent never runs trio while it still has children to fork: trio and
libp2p threads do not survive a fork.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from mesh.core.identity import Identity
from mesh.errors import ConfigError, DeadlineExceeded, MeshError
from mesh.files.keyfile import load_key_file, write_key_file
from mesh.node.config import NodeConfig
from mesh.node.lies import parse_lie
from mesh.testnet.processes import Child, fork_child, stop_children, wait_for_reports

if TYPE_CHECKING:
    from mesh.client.async_client import AsyncClient
    from mesh.node.runtime_runner import RuntimeRunner
    from mesh.runtime.registry import LoadedModel

logger = logging.getLogger(__name__)

BOOTSTRAP_NODES = 3  # how many live nodes a bootstrap list names
# Kademlia hands out at most k = 20 providers per key (py-libp2p 0.8.1 included),
# so with more nodes than that not every node can appear in one provider answer.
PROVIDER_ANSWER_CAP = 20


@dataclass(frozen=True, kw_only=True)
class TestnetConfig:
    """How to build a testnet.

    Attributes:
        nodes: how many node processes.
        model_names: zoo models every node serves.
        work_dir: keys and receipt logs (a temporary folder when None).
        host: the loopback address nodes listen on.
        threads: torch CPU threads per node (1 suits a small machine).
        ready_timeout_s: how long start-up and the findability check may take.
        regions: region labels given round-robin to the nodes.
        node: overrides applied to every node's :class:`NodeConfig`
            (for example ``capacity_refresh_s``).
        liars: how many nodes sign wrong answers on purpose (the last ones;
            node 0, the first bootstrap node, stays honest).
        lies: how they lie (``perturb``, ``lazy``, ``rate:F``; see
            mesh.node.lies), given round-robin to the liars.
    """

    nodes: int
    model_names: tuple[str, ...] = ("tiny-mlp",)
    work_dir: Path | None = None
    host: str = "127.0.0.1"
    threads: int = 1
    ready_timeout_s: float = 60.0
    regions: tuple[str, ...] = ()
    node: dict[str, Any] = field(default_factory=dict)
    liars: int = 0
    lies: tuple[str, ...] = ("perturb",)

    def __post_init__(self) -> None:
        if not 0 <= self.liars < max(1, self.nodes):
            raise ConfigError("liars must be between 0 and nodes - 1 (node 0 stays honest)")
        if self.liars and not self.lies:
            raise ConfigError("liars need at least one lie kind")
        for lie in self.lies:
            parse_lie(lie)  # ConfigError for an unknown kind

    def lie_of(self, index: int) -> str:
        """The lie of node ``index`` (``""`` for an honest node)."""
        first = self.nodes - self.liars
        if index < first:
            return ""
        return self.lies[(index - first) % len(self.lies)]


@dataclass
class NodeProcess:
    """One node of the testnet, as the parent sees it."""

    index: int
    config: NodeConfig
    child: Child
    frozen: bool = False

    @property
    def peer_id(self) -> str:
        return self.config.identity.peer_id

    @property
    def addrs(self) -> list[str]:
        report = self.child.report or {}
        return list(report.get("addrs", []))

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def lie(self) -> str:
        """How this node lies (``""``: honest)."""
        return self.config.lie


class Testnet:
    """Start with :meth:`start` (or ``with Testnet(config) as net:``); stop with :meth:`stop`."""

    def __init__(self, config: TestnetConfig) -> None:
        if config.nodes < 1:
            raise MeshError("a testnet needs at least one node")
        self.config = config
        self.nodes: list[NodeProcess] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._models: list[LoadedModel] = []
        self.started_s: float | None = None
        self.ready_s: float | None = None

    def __enter__(self) -> Testnet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def work_dir(self) -> Path:
        if self.config.work_dir is not None:
            return self.config.work_dir
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mesh-testnet-")
        return Path(self._tmp.name)

    @property
    def bootstrap_addrs(self) -> list[str]:
        """Multiaddrs of the bootstrap nodes (those still running first)."""
        live = [n for n in self.nodes if n.child.exit_code is None and not n.frozen]
        return [a for n in live[:BOOTSTRAP_NODES] for a in n.addrs[:1]]

    def model_roots(self) -> dict[str, bytes]:
        return {m.name: m.model_root for m in self._models}

    def write_bootstrap_file(self, path: Path) -> None:
        lines = ["# mesh testnet bootstrap list: one multiaddr per line"]
        lines += self.bootstrap_addrs
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self) -> None:
        """Fork the nodes and block until every node is findable (or raise)."""
        t0 = time.monotonic()
        self._preload_models()
        deadline = t0 + self.config.ready_timeout_s
        try:
            # Node 0 first (the others need an address to join through), then
            # every other node at once.
            first = self._fork_node(0)
            wait_for_reports([first.child], timeout=max(0.1, deadline - time.monotonic()))
            rest = [self._fork_node(i) for i in range(1, self.config.nodes)]
            wait_for_reports([n.child for n in rest], timeout=max(0.1, deadline - time.monotonic()))
            self.started_s = time.monotonic() - t0
            trio.run(self._wait_findable, deadline)
            self.ready_s = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM every node (they drain), SIGKILL what is left after ``grace``."""
        for node in self.nodes:
            if node.frozen:
                node.child.signal(signal.SIGCONT)
                node.frozen = False
        stop_children([n.child for n in self.nodes], grace=grace)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- fault injection, for churn scenarios and tests -----------------------------
    def kill(self, index: int) -> None:
        """SIGKILL one node: no drain, no goodbye."""
        node = self.nodes[index]
        node.child.signal(signal.SIGKILL)
        os.waitpid(node.pid, 0)
        node.child.exit_code = -signal.SIGKILL

    def freeze(self, index: int) -> None:
        """SIGSTOP one node: its sockets stay open but nothing answers."""
        self.nodes[index].child.signal(signal.SIGSTOP)
        self.nodes[index].frozen = True

    def thaw(self, index: int) -> None:
        self.nodes[index].child.signal(signal.SIGCONT)
        self.nodes[index].frozen = False

    # -- internals ----------------------------------------------------------------------
    def _preload_models(self) -> None:
        # One torch thread in the parent before any op runs: an OpenMP pool made
        # here would be unusable in the forked children.
        from mesh.node.runtime_runner import load_zoo_models
        from mesh.runtime.device import configure_determinism

        configure_determinism(threads=self.config.threads)
        self._models = load_zoo_models(self.config.model_names, device="cpu")
        import mesh.net.libp2p_net  # noqa: F401  (imported once, shared by every child)

    def _node_config(self, index: int) -> NodeConfig:
        node_dir = self.work_dir / f"node-{index:03d}"
        node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_path = node_dir / "node.key"
        # A work dir used before keeps its nodes: each one's receipt log is chained
        # to its key, so a restart must reuse the key, never make a new one.
        if key_path.exists():
            identity = load_key_file(key_path)
        else:
            identity = Identity.generate()
            write_key_file(key_path, identity)
        regions = self.config.regions
        config = NodeConfig(
            identity=identity,
            data_dir=node_dir,
            model_names=self.config.model_names,
            listen=(f"/ip4/{self.config.host}/tcp/0",),
            bootstrap=tuple(self.bootstrap_addrs),
            device="cpu",
            threads=self.config.threads,
            region=regions[index % len(regions)] if regions else "",
            capacity_refresh_s=10.0,
            load_gossip_s=1.0,
            net_timeout_s=3.0,
            drain_timeout_s=5.0,
            lie=self.config.lie_of(index),
        )
        return replace(config, **self.config.node) if self.config.node else config

    def _fork_node(self, index: int) -> NodeProcess:
        config = self._node_config(index)
        child = fork_child(f"node-{index}", _node_main(config, self._models))
        node = NodeProcess(index=index, config=config, child=child)
        self.nodes.append(node)
        return node

    async def _wait_findable(self, deadline: float) -> None:
        """Poll the DHT from a fresh client until every advert is findable.

        Findable means: each node's signed capacity record is returned (and
        validated) under its key and names every model; and a provider lookup of
        each model returns testnet nodes only, as many as the DHT hands out
        (min(N, PROVIDER_ANSWER_CAP): Kademlia answers at most k=20 providers).
        """
        from mesh.client.async_client import AsyncClient

        want = {n.peer_id for n in self.nodes}
        roots = {m.model_root for m in self._models}
        confirmed: set[str] = set()
        with trio.move_on_at(trio.current_time() + max(0.1, deadline - time.monotonic())):
            async with AsyncClient.connect(bootstrap=self.bootstrap_addrs) as client:
                while True:
                    confirmed |= await self._records_found(client, want - confirmed, roots)
                    short = [
                        root
                        for root in roots
                        if not await self._providers_found(client, root, want)
                    ]
                    if confirmed == want and not short:
                        return
                    logger.info(
                        "waiting: %d record(s) and %d provider list(s) not yet findable",
                        len(want - confirmed),
                        len(short),
                    )
                    await trio.sleep(0.2)  # poll the DHT again; adverts are being republished
        raise DeadlineExceeded(f"testnet not findable within {self.config.ready_timeout_s:.0f} s")

    @staticmethod
    async def _records_found(client: AsyncClient, peers: set[str], roots: set[bytes]) -> set[str]:
        found: set[str] = set()
        # A few walks at a time: py-libp2p resets DHT streams past 12 concurrent
        # per peer (notes, bug 8), so 40 parallel lookups mostly fail.
        limiter = trio.CapacityLimiter(4)

        async def one(peer_id: str) -> None:
            async with limiter:
                record = await client.record(peer_id, timeout=3.0)
            if record is not None and roots <= set(record.models):
                found.add(peer_id)

        async with trio.open_nursery() as nursery:
            for peer_id in peers:
                nursery.start_soon(one, peer_id)
        return found

    @staticmethod
    async def _providers_found(client: AsyncClient, root: bytes, want: set[str]) -> bool:
        seen = set(await client.providers(root, timeout=3.0))
        return seen <= want and len(seen) >= min(len(want), PROVIDER_ANSWER_CAP)


def _node_main(
    config: NodeConfig, models: Sequence[LoadedModel]
) -> Callable[[Callable[[dict[str, Any]], None]], int]:
    """The body of one forked node process: ``mesh node``'s lifecycle, reporting to the launcher."""

    def main(report: Callable[[dict[str, Any]], None]) -> int:
        from mesh.node.serve import serve_until_signal
        from mesh.node.service import Node, libp2p_network_factory

        async def runner_factory(_config: NodeConfig) -> RuntimeRunner:
            # The models were loaded before the fork; only the executor is per node.
            from mesh.node.runtime_runner import RuntimeRunner
            from mesh.runtime.executor import Executor

            executor = Executor(models, max_batch=config.max_batch, max_queue=config.max_queue)
            return RuntimeRunner(executor, models, device="cpu")

        def on_ready(node: Node) -> None:
            report({"peer_id": node.peer_id, "addrs": node.listen_addrs()})

        trio.run(
            functools.partial(
                serve_until_signal,
                config,
                network_factory=libp2p_network_factory,
                runner_factory=runner_factory,
                on_ready=on_ready,
            )
        )
        return 0

    return main
