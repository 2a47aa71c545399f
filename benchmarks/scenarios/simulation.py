"""``simulation``: the real discovery and record code on in-memory meshes of 100 to 10,000 peers.

How discovery cost and per-node traffic grow with the size of the mesh, beyond
what fits on one machine as processes.

**Real** (the code that runs in nodes and clients): every node's signed
capacity record (Ed25519, the canonical encoding), its record book and record
exchange (``mesh.core.record_book``, ``mesh.core.exchange``,
``mesh.net.exchange``), its ``Advertiser.announce`` (the push-pull with its
bootstrap peers, at join and once per period), and each client's
``Discovery.candidates`` (exchange round, book, validation of every record it
is handed), over :class:`mesh.net.memory.MemoryHub`, which frames every message
with the real framing code and counts its bytes.

**Simulated**: the network. Peers are tasks of one trio process on a virtual
clock (``MockClock``); each message waits a one-way delay from a latency model:
five regions (one-way 5-150 ms between them, from typical public RTTs) plus
1-10 ms of access delay at each end; no loss, no bandwidth limit, no CPU
contention between peers (CPU time is real but spent one peer at a time).
The DHT is not walked: its lookup time is modelled as ``ceil(log2(N) / 3)``
rounds, each the slowest of three round trips to random peers (Kademlia with
alpha = 3), reported beside the exchange's figures for comparison. Gossip is
not simulated (nodes do not subscribe to it; clients' gossip only refreshes
load figures).

Topology, as in ``mesh testnet``: three bootstrap nodes; every other node joins
through all three (pushing its record to each, taking a sample back); each
client bootstraps through the same three. During one refresh period
(``PERIOD_S``) every node announces once (at a random moment) and
``CLIENTS`` fresh clients arrive, each running one cold discovery then warm
ones. Per-node traffic is the bytes each peer sent and received in that period.
"""

from __future__ import annotations

import hashlib
import math
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

from benchmarks.scenarios.common import Progress
from benchmarks.stats import summary

PERIOD_S = 60.0  # the refresh period of a big testnet (mesh.testnet.launcher)
CLIENTS = 40  # fresh clients arriving in one period
WARM_LOOKUPS = 20  # discoveries each client makes from its book afterwards
CPU_PROBES = 10  # fresh clients timed for CPU after the period, one at a time
BOOTSTRAP = 3
EPOCH_S = 1_800_000_000.0  # virtual wall clock of the records
MODEL = hashlib.sha256(b"simulated model").digest()

REGIONS = ("eu", "us-east", "us-west", "asia", "south-america")
# One-way delays between regions in ms (about half of typical public RTTs).
ONE_WAY_MS = {
    ("eu", "eu"): 5,
    ("eu", "us-east"): 40,
    ("eu", "us-west"): 70,
    ("eu", "asia"): 110,
    ("eu", "south-america"): 100,
    ("us-east", "us-east"): 5,
    ("us-east", "us-west"): 35,
    ("us-east", "asia"): 90,
    ("us-east", "south-america"): 60,
    ("us-west", "us-west"): 5,
    ("us-west", "asia"): 60,
    ("us-west", "south-america"): 85,
    ("asia", "asia"): 15,
    ("asia", "south-america"): 150,
    ("south-america", "south-america"): 10,
}


def plan(*, quick: bool, wan: str) -> list[dict[str, Any]]:
    sizes = (100, 1000) if quick else (100, 1000, 10_000)
    return [{"peers": n, "clients": 10 if quick else CLIENTS, "seed": 7} for n in sizes]


class LatencyModel:
    """Deterministic per-peer region and access delay; one-way delays in seconds."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(seed)

    def _profile(self, peer_id: str) -> tuple[str, float]:
        digest = hashlib.sha256(f"{self._seed}:{peer_id}".encode()).digest()
        region = REGIONS[digest[0] % len(REGIONS)]
        access_ms = 1 + digest[1] % 10
        return region, access_ms

    def one_way(self, a: str, b: str) -> float:
        (ra, xa), (rb, xb) = self._profile(a), self._profile(b)
        key = (ra, rb) if (ra, rb) in ONE_WAY_MS else (rb, ra)
        return (ONE_WAY_MS[key] + xa + xb) / 1000

    def dht_lookup(self, peer_id: str, peers: list[str]) -> float:
        """Modelled Kademlia lookup: rounds of alpha = 3 parallel round trips."""
        rounds = max(1, math.ceil(math.log2(max(2, len(peers))) / 3))
        total = 0.0
        for _ in range(rounds):
            batch = self._rng.sample(peers, min(3, len(peers)))
            total += max(2 * self.one_way(peer_id, p) for p in batch)
        return total


def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    started = time.monotonic()
    cpu0 = time.process_time()
    clock = trio.testing.MockClock(autojump_threshold=0)
    result: dict[str, Any] = trio.run(_simulate, params, progress, clock=clock)
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["cpu_s"] = round(time.process_time() - cpu0, 1)
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


async def _simulate(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from mesh.client.discovery import Discovery
    from mesh.core.identity import Identity
    from mesh.net.memory import MemoryHub
    from mesh.testing import fixed_wall_clock

    count, clients, seed = params["peers"], params["clients"], params["seed"]
    rng = random.Random(seed)
    model = LatencyModel(seed)
    identities = [Identity.from_seed(rng.randbytes(32)) for _ in range(count)]
    ids = [i.peer_id for i in identities]
    hub = MemoryHub(latency=model.one_way, dht_delay=lambda pid: model.dht_lookup(pid, ids))
    wall = fixed_wall_clock(EPOCH_S)
    boot = ids[:BOOTSTRAP]
    nodes: list[_SimNode] = []
    tmp = Path(tempfile.mkdtemp(prefix="mesh-sim-"))

    async with trio.open_nursery() as nursery:
        progress.stage(f"{count} peers joining", count)
        for index, ident in enumerate(identities):
            bootstrap = tuple(boot[: min(index, BOOTSTRAP)])
            node = _SimNode(ident, bootstrap, tmp)
            nodes.append(await nursery.start(node.serve, hub, wall))
            progress.advance()

        for node in nodes:
            node.reset_counters(hub)
        progress.stage(f"{count} peers: one period", count + clients)
        period_started = trio.current_time()
        cold_ms: list[float] = []
        round_trips: list[float] = []
        cold_cpu_ms: list[float] = []
        warm_cpu_us: list[float] = []
        found: list[int] = []
        client_bytes: list[int] = []

        async def announce(node: _SimNode) -> None:
            await trio.sleep(rng.uniform(0, PERIOD_S))
            await node.announce()
            progress.advance()

        async def client(number: int) -> None:
            await trio.sleep(rng.uniform(0, PERIOD_S))
            pid = f"client-{number}"
            async with hub.join(pid, bootstrap=boot) as net:
                discovery = Discovery(net, wall_clock=wall)
                t0 = trio.current_time()
                candidates = await discovery.candidates(MODEL, timeout=10.0)
                cold_ms.append((trio.current_time() - t0) * 1000)
                nearest_rtt = min(2 * model.one_way(pid, b) for b in boot)
                round_trips.append((trio.current_time() - t0) / nearest_rtt)
                found.append(len(candidates))
                client_bytes.append(hub.bytes_in[pid] + hub.bytes_out[pid])
                for _ in range(WARM_LOOKUPS):
                    c0 = time.perf_counter()
                    await discovery.candidates(MODEL, timeout=10.0)
                    warm_cpu_us.append((time.perf_counter() - c0) * 1e6)
            progress.advance()

        async with trio.open_nursery() as period:
            for node in nodes:
                period.start_soon(announce, node)
            for number in range(clients):
                period.start_soon(client, number)
        elapsed = max(PERIOD_S, trio.current_time() - period_started)

        # CPU per cold discovery, measured once the period is over and nothing
        # else runs: the client's work and that of the bootstrap peers answering
        # it (all in this one process), one fresh client at a time.
        for number in range(CPU_PROBES):
            async with hub.join(f"probe-{number}", bootstrap=boot) as net:
                discovery = Discovery(net, wall_clock=wall)
                c0 = time.process_time()
                await discovery.candidates(MODEL, timeout=10.0)
                cold_cpu_ms.append((time.process_time() - c0) * 1000)
        nursery.cancel_scope.cancel()

    boot_nodes, others = nodes[:BOOTSTRAP], nodes[BOOTSTRAP:]
    boot_rates = [n.bytes_per_s(hub, elapsed) for n in boot_nodes]
    other_rates = [n.bytes_per_s(hub, elapsed) for n in others] or [0.0]
    dht_ms = [model.dht_lookup(f"client-{i}", ids) * 1000 for i in range(200)]
    return {
        "peers": count,
        "clients": clients,
        "cold_ms": cold_ms,
        "round_trips": round_trips,
        "cold_cpu_ms": cold_cpu_ms,
        "warm_cpu_us": warm_cpu_us,
        "found": found,
        "client_bytes": client_bytes,
        "bootstrap_bytes_per_s": boot_rates,
        "node_bytes_per_s": other_rates,
        "bootstrap_records_held": [len(n.book) for n in boot_nodes],
        "node_records_held": [len(n.book) for n in others] or [0],
        "dht_lookup_model_ms": dht_ms,
    }


class _SimNode:
    """A node's record side: its real record book, record exchange and advertiser."""

    def __init__(self, identity: Any, bootstrap: tuple[str, ...], tmp: Path) -> None:
        self.identity = identity
        self.bootstrap = bootstrap
        self._tmp = tmp
        self.book: Any = None
        self._advertiser: Any = None
        self._in0 = 0
        self._out0 = 0

    async def serve(
        self, hub: Any, wall: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        from mesh.core.record_book import RecordBook
        from mesh.net.exchange import RecordExchange
        from mesh.node.advertiser import Advertiser
        from mesh.node.config import NodeConfig

        async with hub.join(self.identity.peer_id, bootstrap=self.bootstrap) as net:
            self.book = RecordBook()
            exchange = RecordExchange(net, self.book, wall_clock=wall)
            exchange.serve()
            config = NodeConfig(
                identity=self.identity,
                data_dir=self._tmp,
                listen=(),
                capacity_refresh_s=PERIOD_S,
                net_timeout_s=10.0,
            )
            self._advertiser = Advertiser(
                config=config,
                network=net,
                runner=_SimRunner(),
                wall_clock=wall,
                throughput_milli=lambda: 0,
                queue_depth=lambda: 0,
                queue_capacity=lambda: 64,
                exchange=exchange,
            )
            await self._advertiser.announce()  # the join: what Node.__aenter__ does
            task_status.started(self)
            await trio.sleep_forever()

    async def announce(self) -> None:
        await self._advertiser.announce()

    def reset_counters(self, hub: Any) -> None:
        self._in0 = hub.bytes_in[self.identity.peer_id]
        self._out0 = hub.bytes_out[self.identity.peer_id]

    def bytes_per_s(self, hub: Any, elapsed: float) -> float:
        pid = self.identity.peer_id
        sent_and_received: float = hub.bytes_in[pid] - self._in0 + hub.bytes_out[pid] - self._out0
        return sent_and_received / elapsed


class _SimRunner:
    """What the advertiser reads of a runner: the models served and the device."""

    @property
    def models(self) -> dict[bytes, str]:
        return {MODEL: "sim-model"}

    @property
    def device(self) -> str:
        return "cpu"


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    per_size: dict[str, Any] = {}
    for part in sorted(parts, key=lambda p: p["peers"]):
        cold = summary(part["cold_ms"])
        per_size[str(part["peers"])] = {
            "cold_discovery_p50_ms": cold["p50"],
            "cold_discovery_p90_ms": cold["p90"],
            # Cold discovery time over the round-trip time to the nearest bootstrap peer.
            "cold_discovery_round_trips_p50": summary(part["round_trips"])["p50"],
            "cold_discovery_round_trips_max": summary(part["round_trips"])["max"],
            # CPU of one cold discovery: the client's and its bootstrap peers' answers.
            "cold_discovery_cpu_p50_ms": summary(part["cold_cpu_ms"])["p50"],
            "warm_discovery_cpu_p50_us": summary(part["warm_cpu_us"])["p50"],
            "candidates_per_cold_discovery_mean": round(sum(part["found"]) / len(part["found"]), 1),
            "client_kb_per_cold_discovery_mean": round(
                sum(part["client_bytes"]) / len(part["client_bytes"]) / 1024, 1
            ),
            "bootstrap_node_kb_per_s_mean": round(
                sum(part["bootstrap_bytes_per_s"]) / len(part["bootstrap_bytes_per_s"]) / 1024, 2
            ),
            "node_kb_per_s_mean": round(
                sum(part["node_bytes_per_s"]) / len(part["node_bytes_per_s"]) / 1024, 3
            ),
            "node_kb_per_s_max": round(max(part["node_bytes_per_s"]) / 1024, 3),
            "bootstrap_records_held": min(part["bootstrap_records_held"]),
            "node_records_held_mean": round(
                sum(part["node_records_held"]) / len(part["node_records_held"]), 1
            ),
            "dht_lookup_model_p50_ms": summary(part["dht_lookup_model_ms"])["p50"],
            "simulation_wall_s": part["wall_s"],
            "simulation_cpu_s": part["cpu_s"],
            "simulation_max_rss_mb": part["max_rss_mb"],
        }
    largest = max(per_size, key=int)
    return {
        "largest_simulated_mesh": int(largest),
        "cold_discovery_p50_ms_largest": per_size[largest]["cold_discovery_p50_ms"],
        "per_size": per_size,
        "samples": {
            size: {"cold_ms": p["cold_ms"]} for size, p in ((str(p["peers"]), p) for p in parts)
        },
    }
