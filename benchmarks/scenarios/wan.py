"""``wan``: latency-aware peer choice under emulated inter-region round-trip times.

Nodes are spread round-robin over four regions (North America ``na``, Middle
East ``me``, South America ``sa``, East Africa ``ea``; round-trip times in
:data:`mesh.testnet.wan.RTT_MS`). One client per region sends tasks one after
another; the figures say where each client's tasks ran.

Two modes, named in the results:

- ``netns`` (``--wan``): every node in its own network namespace, veth pairs
  on a bridge, netem delays per region pair (:mod:`mesh.testnet.wan`); each
  client runs in its region's namespace (``ip netns exec``). Needs root and
  ``sch_netem``; ``python -m benchmarks`` checks first and stops if missing.
- ``app`` (``--wan=app``, the fallback): nodes on loopback; the client's
  network is wrapped in :class:`DelayedNetwork`, which delays each task
  request and each dial by the RTT between the client's region and the
  peer's (from the testnet's assignment). DHT traffic is not delayed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from benchmarks.scenarios.common import Progress, mlp_input, testnet
from benchmarks.stats import summary
from mesh.testnet.wan import DelayedNetwork

if TYPE_CHECKING:
    from mesh.testnet.launcher import Testnet

REGION_ORDER = ("na", "me", "sa", "ea")


def plan(*, quick: bool, wan: str) -> list[dict[str, Any]]:
    mode = wan if wan in ("netns", "app") else "app"
    return [{"mode": mode, "nodes": 8, "tasks_per_client": 20 if quick else 60}]


def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    regions = REGION_ORDER
    progress.stage(f"starting {params['nodes']} nodes ({params['mode']})", 1)
    if params["mode"] == "netns":
        picks = _run_netns(params, progress)
    else:
        with testnet(params["nodes"], regions=regions) as net:
            progress.advance()
            region_of = {n.peer_id: n.config.region for n in net.nodes}
            picks = trio.run(_app_clients, net.bootstrap_addrs, region_of, params, progress)
    return {"mode": params["mode"], "nodes": params["nodes"], "picks": picks}


async def _app_clients(
    bootstrap: list[str], region_of: dict[str, str], params: dict[str, Any], progress: Progress
) -> dict[str, list[tuple[str, float]]]:
    from mesh.client.async_client import AsyncClient
    from mesh.core.identity import Identity
    from mesh.net.libp2p_net import open_libp2p_network
    from mesh.testnet.wan import rtt_ms

    per_client = params["tasks_per_client"]
    progress.stage("clients in 4 regions", per_client * len(REGION_ORDER))
    picks: dict[str, list[tuple[str, float]]] = {}
    for region in REGION_ORDER:
        identity = Identity.generate()

        def delay(peer_id: str, region: str = region) -> float:
            return rtt_ms(region, region_of.get(peer_id, region))

        rows: list[tuple[str, float]] = []
        async with (
            open_libp2p_network(
                identity_seed=identity.seed,
                bootstrap=bootstrap,
                dht_server=False,
                require_bootstrap=True,
            ) as inner,
            AsyncClient(DelayedNetwork(inner, delay_ms=delay), identity=identity) as client,
        ):
            for i in range(per_client):
                result = await client.run("tiny-mlp", mlp_input(i), timeout=30)
                rows.append((region_of.get(result.worker, "?"), result.latency_ms))
                progress.advance()
        picks[region] = rows
    return picks


# The client of one region in netns mode, run with ``ip netns exec``: prints
# one JSON line, the list of (worker peer id, request latency ms).
NETNS_CLIENT = """
import json, struct, sys
import trio
from mesh.client.async_client import AsyncClient
from mesh.core.tensors import Tensor

async def main():
    rows = []
    async with AsyncClient.connect(bootstrap=sys.argv[1], listen=[sys.argv[3]]) as client:
        for i in range(int(sys.argv[2])):
            x = Tensor("float32", (1, 32), struct.pack("<32f", *[i / 100] * 32))
            result = await client.run("tiny-mlp", {"x": x}, timeout=30)
            rows.append((result.worker, result.latency_ms))
    print(json.dumps(rows), flush=True)

trio.run(main)
"""


def _run_netns(params: dict[str, Any], progress: Progress) -> dict[str, list[tuple[str, float]]]:
    from mesh.testnet.launcher import TestnetConfig
    from mesh.testnet.wan import WanTestnet, make_plan, setup, teardown

    regions = [REGION_ORDER[i % len(REGION_ORDER)] for i in range(params["nodes"])]
    wan_plan = make_plan(regions)
    setup(wan_plan, netem=params.get("netem", True))
    try:
        config = TestnetConfig(nodes=params["nodes"], regions=REGION_ORDER, ready_timeout_s=120)
        net = WanTestnet(config, wan_plan)
        net.start()
        try:
            progress.advance()
            return _netns_clients(net, wan_plan.clients, params, progress)
        finally:
            net.stop()
    finally:
        teardown(wan_plan)


def _netns_clients(
    net: Testnet, sites: dict[str, Any], params: dict[str, Any], progress: Progress
) -> dict[str, list[tuple[str, float]]]:
    region_of = {n.peer_id: n.config.region for n in net.nodes}
    per_client = params["tasks_per_client"]
    progress.stage("clients in 4 regions", len(REGION_ORDER))
    picks: dict[str, list[tuple[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="mesh-wan-") as tmp:
        bootstrap = Path(tmp) / "bootstrap.txt"
        net.write_bootstrap_file(bootstrap)
        for region in REGION_ORDER:
            listen = f"/ip4/{sites[region].ip}/tcp/0"
            command = ["ip", "netns", "exec", sites[region].netns, sys.executable, "-c"]
            command += [NETNS_CLIENT, str(bootstrap), str(per_client), listen]
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
            rows = json.loads(done.stdout.strip().splitlines()[-1])
            picks[region] = [(region_of.get(w, "?"), ms) for w, ms in rows]
            progress.advance()
    return picks


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    from mesh.testnet.wan import REGIONS, rtt_ms

    part = parts[0]
    picks: dict[str, dict[str, int]] = {}
    near_share: dict[str, float] = {}
    latency: dict[str, float] = {}
    late_share: dict[str, float] = {}
    for client, rows in part["picks"].items():
        counts = Counter(worker for worker, _ in rows)
        picks[client] = dict(sorted(counts.items()))
        near_share[client] = round(counts.get(client, 0) / len(rows), 3)
        latency[client] = summary([ms for _, ms in rows])["p50"]
        half = rows[len(rows) // 2 :]
        late_share[client] = round(sum(1 for w, _ in half if w == client) / len(half), 3)
    shares = list(near_share.values())
    return {
        "mode": "netns (netem)" if part["mode"] == "netns" else "app (client-side delay)",
        "near_share_mean": round(sum(shares) / len(shares), 3),
        "near_share": near_share,
        "near_share_second_half_mean": round(sum(late_share.values()) / len(late_share), 3),
        "near_share_second_half": late_share,
        "request_p50_ms": latency,
        "picks": picks,
        "nodes": part["nodes"],
        "regions": {r: REGIONS[r] for r in REGION_ORDER},
        "rtt_ms": {f"{a}-{b}": rtt_ms(a, b) for a in REGION_ORDER for b in REGION_ORDER if a <= b},
    }
