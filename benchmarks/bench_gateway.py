"""The gateway's added latency per request, against ``AsyncClient.run`` in-process.

Run from the repository root: ``python -m benchmarks.bench_gateway [--requests N]``.
Prints one JSON object.

One node (``max_batch=1``, so a lone task never waits for batch company) serves
tiny-gpt and minilm-l6; a ``mesh gateway`` subprocess and this process's own
``AsyncClient`` both talk to it over warm connections. Requests alternate
between the two paths, one at a time, so both see the same machine load:

- ``direct_ms``: ``await client.run(...)`` in this process (the baseline);
- ``gateway_ms``: an HTTP request to the gateway (httpx, keep-alive) until its
  JSON answer is read: HTTP parsing, request checks, local token counting,
  the gateway's own ``client.run`` and the response's JSON with receipts;
- ``added_ms``: ``gateway_ms - direct_ms`` per alternating pair.

Workloads: ``completion`` (tiny-gpt, 1 greedy token, the shortest generation)
and ``embedding`` (minilm-l6, one sentence), each with the same inputs and
params on both paths.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import trio

from benchmarks.scenarios.common import testnet
from benchmarks.stats import summary

READY_TIMEOUT_S = 120.0
PROMPT = "Hello mesh"
SENTENCE = "The gateway speaks OpenAI's API to the mesh."


def _start_gateway(bootstrap: Path) -> tuple[subprocess.Popen[str], str]:
    """A gateway subprocess and its URL, once it printed its startup line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh", "gateway", "--bootstrap", str(bootstrap),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: Queue[str] = Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except Empty:
            proc.kill()
            raise SystemExit("the gateway did not start in time") from None
        if line.startswith("gateway listening "):
            return proc, line.split()[2]


async def _measure(bootstrap: list[str], url: str, requests: int, warmup: int) -> dict[str, Any]:
    import httpx

    from mesh.client.async_client import AsyncClient

    completion = {"model": "tiny-gpt", "prompt": PROMPT, "max_tokens": 1, "temperature": 0}
    workloads: dict[str, tuple[Any, Any]] = {
        "completion": (
            lambda c: c.run(
                "tiny-gpt", {"prompt": [PROMPT]}, max_tokens=1, temperature_milli=0, seed=1
            ),
            lambda h: h.post("/v1/completions", json={**completion, "seed": 1}),
        ),
        "embedding": (
            lambda c: c.run("minilm-l6", {"texts": [SENTENCE]}),
            lambda h: h.post("/v1/embeddings", json={"model": "minilm-l6", "input": SENTENCE}),
        ),
    }
    figures: dict[str, Any] = {}
    async with (
        AsyncClient.connect(bootstrap=bootstrap) as client,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        for name, (direct, via_http) in workloads.items():
            direct_ms: list[float] = []
            gateway_ms: list[float] = []
            for i in range(warmup + requests):
                start = time.perf_counter()
                await direct(client)
                middle = time.perf_counter()
                response = await via_http(http)
                end = time.perf_counter()
                response.raise_for_status()
                if i >= warmup:
                    direct_ms.append((middle - start) * 1000)
                    gateway_ms.append((end - middle) * 1000)
            added = [g - d for g, d in zip(gateway_ms, direct_ms, strict=True)]
            figures[name] = {
                "direct_ms": summary(direct_ms),
                "gateway_ms": summary(gateway_ms),
                "added_ms": summary(added),
                "added_p50_ms": round(summary(gateway_ms)["p50"] - summary(direct_ms)["p50"], 3),
            }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="measured per path and workload")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    with (
        testnet(1, models=("tiny-gpt", "minilm-l6"), max_batch=1) as net,
        tempfile.TemporaryDirectory() as tmp,
    ):
        bootstrap = Path(tmp) / "bootstrap.txt"
        bootstrap.write_text("\n".join(net.bootstrap_addrs) + "\n")
        proc, url = _start_gateway(bootstrap)
        try:
            figures = trio.run(_measure, net.bootstrap_addrs, url, args.requests, args.warmup)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(
        json.dumps(
            {
                "benchmark": "gateway",
                "requests": args.requests,
                "warmup": args.warmup,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                **figures,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
