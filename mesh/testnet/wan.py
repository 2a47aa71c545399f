"""Emulated WAN for a local testnet: network namespaces, veth pairs and netem delays.

Every node gets its own network namespace (``<prefix>-n<i>``) with one veth
pair whose host end hangs on a bridge in the root namespace; the launcher's
address space is ``10.77.<region>.<k>/16``. Latency between regions is added on
each namespace's egress by an HTB qdisc with one class per destination region,
each holding a netem qdisc that delays by half that pair's round-trip time, so
a round trip between two regions costs their RTT. Clients get a namespace per
region (``<prefix>-c-<region>``) made the same way.

The forked launcher cannot be told where to put a node, so
:class:`WanTestnet` enters the node's namespace (``setns`` on the forking
thread) around each fork and makes the node listen on its namespace address.

Needs root, ``ip``/``tc`` (iproute2) and the kernel's ``sch_netem``;
:func:`check_support` says which is missing before anything is made.
:class:`DelayedNetwork` is the labelled fallback for machines without them:
the delay is added by the client, at the application layer.

Round-trip times (:data:`RTT_MS`) are approximations of public inter-region
latency tables (cloud providers' region-to-region medians, e.g. us-east to
me-south ~190 ms, us-east to sa-east ~120 ms, us-east to af-south/East Africa
~230 ms, me-south to East Africa ~90 ms, sa-east to East Africa ~300 ms via
Europe, sa-east to me-south ~280 ms); within a region 10 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import trio

from mesh.errors import ConfigError, DeadlineExceeded, MeshError
from mesh.net.forwarding import ForwardingNetwork
from mesh.net.interface import Network, OnPartial, PeerAddr
from mesh.node.config import NodeConfig
from mesh.testnet.launcher import NodeProcess, Testnet, TestnetConfig

logger = logging.getLogger(__name__)

REGIONS: dict[str, str] = {
    "na": "North America",
    "me": "Middle East",
    "sa": "South America",
    "ea": "East Africa",
}
INTRA_REGION_RTT_MS = 10.0
RTT_MS: dict[frozenset[str], float] = {
    frozenset(("na", "me")): 190.0,
    frozenset(("na", "sa")): 120.0,
    frozenset(("na", "ea")): 230.0,
    frozenset(("me", "ea")): 90.0,
    frozenset(("sa", "ea")): 300.0,
    frozenset(("sa", "me")): 280.0,
}
SUBNET = "10.77"  # 10.77.0.1 is the bridge; 10.77.<region index + 1>.<k> the namespaces
BRIDGE = "meshbr0"
_CLIENT_HOST = 200  # 10.77.<r>.200 is the client namespace of region r
_CLONE_NEWNET = 0x40000000


def rtt_ms(a: str, b: str) -> float:
    """Round-trip time between two regions in milliseconds.

    Raises:
        ConfigError: a region not in :data:`REGIONS`.
    """
    for region in (a, b):
        if region not in REGIONS:
            raise ConfigError(f"unknown region {region!r}; known: {', '.join(REGIONS)}")
    return INTRA_REGION_RTT_MS if a == b else RTT_MS[frozenset((a, b))]


@dataclass(frozen=True, slots=True)
class Site:
    """One namespace: its name, region, address and host-side veth name."""

    netns: str
    region: str
    ip: str
    veth: str


@dataclass(frozen=True, slots=True)
class WanPlan:
    """Namespaces for ``nodes`` (one per node) and ``clients`` (one per region)."""

    nodes: tuple[Site, ...]
    clients: dict[str, Site]

    @property
    def sites(self) -> tuple[Site, ...]:
        return self.nodes + tuple(self.clients.values())


def make_plan(node_regions: Sequence[str], *, prefix: str = "mesh") -> WanPlan:
    """Addresses and names for nodes in ``node_regions`` (one entry per node).

    Raises:
        ConfigError: an unknown region, or more than 199 nodes in one region.
    """
    order = list(REGIONS)
    per_region: dict[str, int] = {}
    nodes = []
    for index, region in enumerate(node_regions):
        rtt_ms(region, region)  # validates the name
        k = per_region[region] = per_region.get(region, 0) + 1
        if k >= _CLIENT_HOST:
            raise ConfigError(f"too many nodes in region {region}")
        ip = f"{SUBNET}.{order.index(region) + 1}.{k}"
        nodes.append(Site(f"{prefix}-n{index}", region, ip, f"{prefix[:4]}v{index}"))
    clients = {
        region: Site(
            f"{prefix}-c-{region}",
            region,
            f"{SUBNET}.{order.index(region) + 1}.{_CLIENT_HOST}",
            f"{prefix[:4]}c{region}",
        )
        for region in order
    }
    return WanPlan(tuple(nodes), clients)


def setup_commands(plan: WanPlan, *, netem: bool = True) -> list[list[str]]:
    """The ``ip``/``tc`` commands that build ``plan`` (in order)."""
    commands = [
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", f"{SUBNET}.0.1/16", "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ]
    for site in plan.sites:
        ns = ["ip", "netns", "exec", site.netns]
        commands += [
            ["ip", "netns", "add", site.netns],
            # The namespace end gets a unique name first (the root namespace
            # may have its own eth0), then is renamed inside the namespace.
            ["ip", "link", "add", site.veth, "type", "veth", "peer", "name", f"{site.veth}p"],
            ["ip", "link", "set", f"{site.veth}p", "netns", site.netns],
            [*ns, "ip", "link", "set", f"{site.veth}p", "name", "eth0"],
            ["ip", "link", "set", site.veth, "master", BRIDGE],
            ["ip", "link", "set", site.veth, "up"],
            [*ns, "ip", "addr", "add", f"{site.ip}/16", "dev", "eth0"],
            [*ns, "ip", "link", "set", "eth0", "up"],
            [*ns, "ip", "link", "set", "lo", "up"],
        ]
        if netem:
            commands += _netem_commands(site)
    return commands


def _netem_commands(site: Site) -> list[list[str]]:
    """HTB with a class per destination region, each delaying by half the pair's RTT."""

    def tc(words: str) -> list[str]:
        return ["ip", "netns", "exec", site.netns, "tc", *words.split()]

    commands = [
        tc("qdisc add dev eth0 root handle 1: htb default 99"),
        tc("class add dev eth0 parent 1: classid 1:99 htb rate 10gbit"),
    ]
    for index, region in enumerate(REGIONS):
        minor = 10 + index
        one_way = rtt_ms(site.region, region) / 2
        dst = f"{SUBNET}.{index + 1}.0/24"
        flow = f"flowid 1:{minor}"
        commands += [
            tc(f"class add dev eth0 parent 1: classid 1:{minor} htb rate 10gbit"),
            tc(f"qdisc add dev eth0 parent 1:{minor} handle {minor}: netem delay {one_way:g}ms"),
            tc(f"filter add dev eth0 protocol ip parent 1: prio 1 u32 match ip dst {dst} {flow}"),
        ]
    return commands


def teardown_commands(plan: WanPlan) -> list[list[str]]:
    """Commands that remove what :func:`setup_commands` made (veths go with their namespace)."""
    return [["ip", "netns", "del", s.netns] for s in plan.sites] + [["ip", "link", "del", BRIDGE]]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def setup(plan: WanPlan, *, netem: bool = True) -> None:
    """Build the namespaces, veths, bridge and delays; undo everything on failure.

    Raises:
        MeshError: a command failed (its stderr is in the message).
    """
    for command in setup_commands(plan, netem=netem):
        done = _run(command)
        if done.returncode != 0:
            teardown(plan)
            raise MeshError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def teardown(plan: WanPlan) -> None:
    """Remove the namespaces and the bridge (missing pieces are fine)."""
    for command in teardown_commands(plan):
        _run(command)


def check_support() -> str | None:
    """Why the namespace WAN cannot run here, or None when it can.

    Checks, in order: root, the ``ip`` and ``tc`` tools, making a network
    namespace, and adding a netem qdisc inside it. Leaves nothing behind.
    """
    if os.geteuid() != 0:
        return f"network namespaces need root (running as uid {os.geteuid()})"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the {tool!r} tool (iproute2) is not installed"
    probe = f"mesh-probe-{os.getpid()}"
    done = _run(["ip", "netns", "add", probe])
    if done.returncode != 0:
        return f"cannot make a network namespace: {done.stderr.strip()}"
    try:
        ns = ["ip", "netns", "exec", probe]
        _run([*ns, "ip", "link", "set", "lo", "up"])
        done = _run([*ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        if done.returncode != 0:
            return (
                "the kernel has no netem qdisc (sch_netem), so no latency can be emulated: "
                f"tc said {done.stderr.strip()!r}"
            )
    finally:
        _run(["ip", "netns", "del", probe])
    return None


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with the calling thread in network namespace ``name``.

    A process forked inside the block lives in that namespace.

    Raises:
        MeshError: the namespace cannot be entered.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    except OSError as exc:
        os.close(original)
        raise MeshError(f"no network namespace {name!r}: {exc.strerror}") from exc
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            raise MeshError(f"setns({name}) failed: {os.strerror(ctypes.get_errno())}")
        yield
    finally:
        libc.setns(original, _CLONE_NEWNET)
        os.close(target)
        os.close(original)


class WanTestnet(Testnet):
    """A :class:`Testnet` whose node *i* runs in namespace ``plan.nodes[i]``.

    Build the plan with :func:`make_plan` from the same region list the config
    uses, and :func:`setup` it before :meth:`start`.
    """

    def __init__(self, config: TestnetConfig, plan: WanPlan) -> None:
        if len(plan.nodes) != config.nodes:
            raise ConfigError(f"plan has {len(plan.nodes)} sites for {config.nodes} nodes")
        super().__init__(config)
        self.plan = plan

    def _node_config(self, index: int) -> NodeConfig:
        config = super()._node_config(index)
        site = self.plan.nodes[index]
        return replace(config, listen=(f"/ip4/{site.ip}/tcp/0",), region=site.region)

    def _fork_node(self, index: int) -> NodeProcess:
        with in_netns(self.plan.nodes[index].netns):
            return super()._fork_node(index)


class DelayedNetwork(ForwardingNetwork):
    """The ``--wan=app`` fallback: a Network that adds a per-peer round trip to requests.

    Where namespaces or netem are missing, a client wrapped in this sees each
    task request and each dial take the emulated RTT longer (DHT and gossip
    traffic are not delayed), so latency-aware peer choice can still be seen.

    Args:
        inner: the real network.
        delay_ms: the emulated round-trip time to a peer id, in milliseconds.
    """

    def __init__(self, inner: Network, *, delay_ms: Callable[[str], float]) -> None:
        super().__init__(inner)
        self._delay_ms = delay_ms

    async def _delay(self, peer_id: str, timeout: float) -> float:  # noqa: ASYNC109
        """Sleep one emulated round trip; return the time left of ``timeout``."""
        delay = self._delay_ms(peer_id) / 1000
        if delay >= timeout:
            await trio.sleep(timeout)
            raise DeadlineExceeded(f"emulated round trip to {peer_id} exceeds the deadline")
        await trio.sleep(delay)
        return timeout - delay

    async def request(
        self,
        peer: PeerAddr,
        protocol: str,
        payload: bytes,
        *,
        timeout: float,  # noqa: ASYNC109
        on_partial: OnPartial | None = None,
    ) -> bytes:
        left = await self._delay(peer.peer_id, timeout)
        return await self._inner.request(
            peer, protocol, payload, timeout=left, on_partial=on_partial
        )

    async def connect(self, peer: PeerAddr, *, timeout: float) -> None:  # noqa: ASYNC109
        left = await self._delay(peer.peer_id, timeout)
        await self._inner.connect(peer, timeout=left)


def region_of(net: Testnet) -> dict[str, str]:
    """PeerID -> region label of every node of ``net``."""
    return {node.peer_id: node.config.region for node in net.nodes}


def describe(plan: WanPlan) -> dict[str, Any]:
    """A JSON-able description of the plan (for results files)."""
    return {
        "nodes": [{"netns": s.netns, "region": s.region, "ip": s.ip} for s in plan.nodes],
        "clients": {r: s.ip for r, s in plan.clients.items()},
    }
