"""``overhead``: per-task latency through the mesh minus the node's compute time.

One node serves tiny-mlp with ``max_batch=1``, so a lone task never waits for
batch company (the executor's 5 ms batching window would otherwise sit inside
the receipt's times and hide nothing, but inflate latency). One client sends
tasks one after another over a warm connection (after a warm-up).

For each task:

- ``request_ms``: the client's time for the successful request (send the framed
  task, the node checks, runs, signs, answers) as ``RunResult.latency_ms``;
- ``compute_ms``: the receipt's ``finished_ms - started_ms``, which brackets
  the executor call in ``mesh/node/handler.py`` (queue + forward pass; integer
  milliseconds, so each value is quantised to 1 ms);
- ``overhead_ms = request_ms - compute_ms`` (the named figure);
- ``run_ms``: the whole ``AsyncClient.run`` call, which also signs the task,
  asks the DHT for providers and verifies the receipt.

The model's own forward pass is timed in-process too (``inprocess_compute``),
to show what the receipt's 1 ms resolution hides.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from benchmarks.scenarios.common import Progress, mlp_input, testnet
from benchmarks.stats import summary
from mesh.core.values import Values


def plan(*, quick: bool, wan: str) -> list[dict[str, Any]]:
    return [{"tasks": 200 if quick else 2000, "warmup": 30 if quick else 100}]


def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    with testnet(1, max_batch=1) as net:
        measured = trio.run(_measure, net.bootstrap_addrs, params, progress)
    measured["inprocess_compute_ms"] = _inprocess_compute(params["tasks"])
    return measured


async def _measure(
    bootstrap: list[str], params: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    from mesh.client.async_client import AsyncClient

    request_ms: list[float] = []
    compute_ms: list[float] = []
    run_ms: list[float] = []
    async with AsyncClient.connect(bootstrap=bootstrap) as client:
        progress.stage("warm-up", params["warmup"])
        for i in range(params["warmup"]):
            await client.run("tiny-mlp", mlp_input(i), timeout=30)
            progress.advance()
        progress.stage("tasks", params["tasks"])
        for i in range(params["tasks"]):
            started = trio.current_time()
            result = await client.run("tiny-mlp", mlp_input(i), timeout=30)
            run_ms.append((trio.current_time() - started) * 1000)
            receipt = result.receipt.message
            request_ms.append(result.latency_ms)
            compute_ms.append(float(receipt.finished_ms - receipt.started_ms))
            progress.advance()
    return {"request_ms": request_ms, "compute_ms": compute_ms, "run_ms": run_ms}


def _inprocess_compute(count: int) -> list[float]:
    """The forward pass alone, batch of one, as the executor times it."""
    from mesh.runtime.registry import load_model
    from mesh.runtime.zoo import Zoo

    model = load_model(Zoo.builtin().manifest("tiny-mlp"), device="cpu")
    times = []
    for i in range(count):
        items: list[tuple[Values, dict[str, int]]] = [(mlp_input(i), {})]
        start = time.perf_counter()
        model.run_batch(items)
        times.append((time.perf_counter() - start) * 1000)
    return times


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    part = parts[0]
    overhead = [r - c for r, c in zip(part["request_ms"], part["compute_ms"], strict=True)]
    inproc = summary(part["inprocess_compute_ms"])
    over = summary(overhead)
    request = summary(part["request_ms"])
    return {
        "overhead_p50_ms": over["p50"],
        "overhead_p99_ms": over["p99"],
        "overhead_ms": over,
        "request_ms": request,
        "receipt_compute_ms": summary(part["compute_ms"]),
        "inprocess_compute_ms": inproc,
        "overhead_vs_inprocess_p50_ms": round(request["p50"] - inproc["p50"], 3),
        "run_call_ms": summary(part["run_ms"]),
        "tasks": len(overhead),
        "samples": {"overhead_ms": [round(v, 3) for v in overhead]},
    }
