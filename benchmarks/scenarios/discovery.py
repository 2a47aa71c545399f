"""``discovery``: from "who serves model X" to a live chosen peer, per testnet size.

Each testnet size runs in its own process. After the testnet is ready, the
node processes' proportional memory (PSS) is read, then a client runs
``trials`` discoveries. One trial, timed end to end:

1. a DHT provider lookup for tiny-mlp's model_root,
2. fetching and verifying candidates' signed capacity records (at most
   ``MAX_RECORD_FETCHES`` per lookup; a fresh
   :class:`~mesh.client.discovery.Discovery` per trial, so no record is cached),
3. scoring and choosing a peer (:class:`~mesh.client.selection.PeerBook`),
4. a liveness check on the chosen peer (``connect``; instant when a connection
   is already open, a dial otherwise).

The same trials with the client's long-lived record cache are reported as
``warm_*``: what every ``AsyncClient.run`` pays once records are known; and
the provider lookup alone (step 1) as ``provider_lookup_p50_ms``. Each node's
CPU use over the trials (``/proc/<pid>/stat``) shows what a mostly idle node
costs: on a 2-core machine, 20 or 40 of them compete with the client.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from benchmarks.scenarios.common import Progress, cpu_seconds, pss_kb, testnet
from benchmarks.stats import summary
from mesh.errors import MeshError

# Past 20 nodes on a 2-core machine, every node re-advertising each 10 s (the
# testnet default) keeps the cores saturated and adverts miss their deadlines;
# the 40-node part advertises each 60 s (its records live 3 minutes).
BIG_TESTNET_NODE = {"capacity_refresh_s": 60.0}


def plan(*, quick: bool, wan: str) -> list[dict[str, Any]]:
    sizes = (5, 10) if quick else (5, 10, 20, 40)
    return [
        {
            "nodes": n,
            "trials": 15 if quick else 20,
            **({"node": BIG_TESTNET_NODE} if n > 20 else {}),
        }
        for n in sizes
    ]


def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    progress.stage(f"starting {params['nodes']} nodes", 1)
    # "node": NodeConfig overrides, e.g. {"net_timeout_s": 10} so adverts of a
    # big testnet on few cores get stored before their deadline.
    overrides = params.get("node", {})
    ready_s = params.get("ready_timeout_s", 240.0)
    with testnet(params["nodes"], ready_timeout_s=ready_s, **overrides) as net:
        progress.advance()
        pss = [pss_kb(node.pid) for node in net.nodes]
        root = net.model_roots()["tiny-mlp"]
        cpu_before = [cpu_seconds(node.pid) or 0.0 for node in net.nodes]
        started = time.monotonic()
        measured = trio.run(_measure, net.bootstrap_addrs, root, params, progress)
        elapsed = time.monotonic() - started
        cpu_after = [cpu_seconds(node.pid) or 0.0 for node in net.nodes]
        measured["node_cpu_percent"] = [
            100 * (a - b) / elapsed for a, b in zip(cpu_after, cpu_before, strict=True)
        ]
        measured["pss_kb"] = [p for p in pss if p is not None]
        measured["ready_s"] = net.ready_s
    measured["nodes"] = params["nodes"]
    return measured


async def _measure(
    bootstrap: list[str], root: bytes, params: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    from mesh.aio.clock import trio_wall_clock
    from mesh.client.async_client import AsyncClient
    from mesh.client.discovery import Discovery
    from mesh.client.selection import PeerBook

    cold: list[float] = []
    warm: list[float] = []
    providers: list[float] = []
    found: list[int] = []
    failures = 0
    async with AsyncClient.connect(bootstrap=bootstrap) as client:
        progress.stage(f"{params['nodes']} nodes: trials", 3 * params["trials"])
        for trial in range(3 * params["trials"]):
            if trial % 3 == 2:
                # The provider lookup alone, to split the trial's time.
                started = trio.current_time()
                await client._network.find_providers(root, count=20, timeout=5.0)
                providers.append((trio.current_time() - started) * 1000)
                progress.advance()
                continue
            fresh = trial % 3 == 0  # interleaved cold and warm trials: same network conditions
            discovery = Discovery(client._network, wall_clock=trio_wall_clock())
            if not fresh:
                discovery = client._discovery
            started = trio.current_time()
            candidates = await discovery.candidates(root, timeout=5.0)
            book = client._book if not fresh else PeerBook(client._network)
            choices = [(c.peer.peer_id, c.load) for c in candidates]
            pick = book.choose(choices)
            ok = False
            if pick is not None:
                peer = next(c.peer for c in candidates if c.peer.peer_id == pick)
                try:
                    await client._network.connect(peer, timeout=5.0)
                    ok = True
                except MeshError:  # a failed trial is counted, not fatal
                    ok = False
            elapsed = (trio.current_time() - started) * 1000
            if ok:
                (cold if fresh else warm).append(elapsed)
                found.append(len(candidates))
            else:
                failures += 1
            progress.advance()
    return {
        "cold_ms": cold,
        "warm_ms": warm,
        "providers_ms": providers,
        "found": found,
        "failures": failures,
    }


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    per_size: dict[str, Any] = {}
    for part in sorted(parts, key=lambda p: p["nodes"]):
        cold = summary(part["cold_ms"])
        warm = summary(part["warm_ms"])
        pss = part["pss_kb"]
        per_size[str(part["nodes"])] = {
            "discovery_p50_ms": cold["p50"],
            "discovery_p90_ms": cold["p90"],
            "warm_discovery_p50_ms": warm["p50"],
            "provider_lookup_p50_ms": summary(part["providers_ms"])["p50"],
            "candidates_found_mean": round(sum(part["found"]) / max(1, len(part["found"])), 1),
            "failed_trials": part["failures"],
            "pss_mb_per_node_mean": round(sum(pss) / len(pss) / 1024, 1),
            "pss_mb_per_node_max": round(max(pss) / 1024, 1),
            "pss_mb_all_nodes": round(sum(pss) / 1024, 1),
            "testnet_ready_s": round(part["ready_s"], 1),
            "node_cpu_percent_mean": round(
                sum(part["node_cpu_percent"]) / len(part["node_cpu_percent"]), 1
            ),
        }
    largest = max(per_size, key=int)
    return {
        "discovery_p50_ms_largest": per_size[largest]["discovery_p50_ms"],
        "largest_testnet": int(largest),
        "per_size": per_size,
    }
