"""``discovery``: from "who serves model X" to a live chosen peer, per testnet size.

Each testnet size runs in its own process. After the testnet is ready, the
node processes' proportional memory (PSS) is read, then a client runs
``trials`` discoveries. One trial, timed end to end:

1. :meth:`~mesh.client.discovery.Discovery.candidates` for tiny-mlp's model_root
   on a *fresh* :class:`~mesh.client.discovery.Discovery` (an empty record
   book): one record-exchange round with the client's bootstrap peers, every
   record handed out checked; the DHT only if that gave no live worker,
2. scoring and choosing a peer (:class:`~mesh.client.selection.PeerBook`),
3. a liveness check on the chosen peer (``connect``; instant when a connection
   is already open, a dial otherwise).

The client's own connections to its bootstrap peers are warm (it connected
once); what is cold is its knowledge. The same trials with the client's
long-lived book are reported as ``warm_*``: what every ``AsyncClient.run`` pays
once records are known. ``choice_p50_ms`` and ``warm_choice_p50_ms`` time steps 1
and 2 alone: a pick among 40 or 100 equally unmeasured peers is often one the
client never dialled, and that dial (step 3) is not discovery. A DHT provider
lookup alone is timed as ``provider_lookup_p50_ms`` (the testnet's DHT adverts
are spread over the first refresh period, so early lookups may find fewer
providers). Each node's CPU use
over the trials (``/proc/<pid>/stat``) shows what a mostly idle node costs.
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio

from benchmarks.scenarios.common import Progress, cpu_seconds, pss_kb, testnet
from benchmarks.stats import summary
from mesh.errors import MeshError


def plan(*, quick: bool, wan: str) -> list[dict[str, Any]]:
    sizes = (5, 10) if quick else (5, 10, 20, 40, 100)
    return [{"nodes": n, "trials": 15 if quick else 20} for n in sizes]


def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    progress.stage(f"starting {params['nodes']} nodes", 1)
    # "node": NodeConfig overrides, e.g. {"net_timeout_s": 10} so adverts of a
    # big testnet on few cores get stored before their deadline.
    overrides = params.get("node", {})
    ready_s = params.get("ready_timeout_s", 240.0)
    with testnet(params["nodes"], ready_timeout_s=ready_s, **overrides) as net:
        progress.advance()
        load_at_ready = os.getloadavg()[0]
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
        measured["started_s"] = net.started_s
        measured["load_1m_at_ready"] = load_at_ready
        measured["load_1m_after"] = os.getloadavg()[0]
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
    # The same trials up to the choice of a worker, before the connection to it:
    # a warm client's pick may be a peer it never dialled (a dial is ~5 ms here).
    cold_choice: list[float] = []
    warm_choice: list[float] = []
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
            chosen = (trio.current_time() - started) * 1000
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
                (cold_choice if fresh else warm_choice).append(chosen)
                found.append(len(candidates))
            else:
                failures += 1
            progress.advance()
    return {
        "cold_ms": cold,
        "warm_ms": warm,
        "cold_choice_ms": cold_choice,
        "warm_choice_ms": warm_choice,
        "providers_ms": providers,
        "found": found,
        "failures": failures,
    }


def _p50(values: list[float] | None) -> float | None:
    """The median, or None for a run logged before the figure existed."""
    return summary(values)["p50"] if values else None


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
            # Candidates found and a worker chosen, without connecting to it.
            "choice_p50_ms": _p50(part.get("cold_choice_ms")),
            "warm_choice_p50_ms": _p50(part.get("warm_choice_ms")),
            "provider_lookup_p50_ms": summary(part["providers_ms"])["p50"],
            "candidates_found_mean": round(sum(part["found"]) / max(1, len(part["found"])), 1),
            "failed_trials": part["failures"],
            "pss_mb_per_node_mean": round(sum(pss) / len(pss) / 1024, 1),
            "pss_mb_per_node_max": round(max(pss) / 1024, 1),
            "pss_mb_all_nodes": round(sum(pss) / 1024, 1),
            "testnet_ready_s": round(part["ready_s"], 1),
            "testnet_started_s": round(part.get("started_s") or 0.0, 1),
            "load_1m_at_ready": round(part.get("load_1m_at_ready", -1.0), 2),
            "load_1m_after": round(part.get("load_1m_after", -1.0), 2),
            "node_cpu_percent_mean": round(
                sum(part["node_cpu_percent"]) / len(part["node_cpu_percent"]), 1
            ),
        }
    largest = max(per_size, key=int)
    figures: dict[str, Any] = {
        "discovery_p50_ms_largest": per_size[largest]["discovery_p50_ms"],
        "largest_testnet": int(largest),
    }
    # The aims name sizes: discovery on 40 nodes; the 100-node testnet's start and memory.
    if "40" in per_size:
        figures["discovery_p50_ms_40"] = per_size["40"]["discovery_p50_ms"]
        figures["warm_discovery_p50_ms_40"] = per_size["40"]["warm_discovery_p50_ms"]
        figures["choice_p50_ms_40"] = per_size["40"]["choice_p50_ms"]
        figures["warm_choice_p50_ms_40"] = per_size["40"]["warm_choice_p50_ms"]
    if "100" in per_size:
        figures["testnet_ready_s_100"] = per_size["100"]["testnet_ready_s"]
        figures["pss_mb_per_node_mean_100"] = per_size["100"]["pss_mb_per_node_mean"]
    figures["per_size"] = per_size
    return figures
