"""``churn``: tasks keep completing while 30% of the nodes are killed at random moments.

A testnet of ``nodes`` processes serves tiny-mlp; one client runs ``tasks``
tasks, ``concurrency`` at a time, each through ``AsyncClient.run`` (discovery,
choice, retry elsewhere on failure, receipt verification). Fault moments are
drawn at random (seeded) as points of progress between 5% and 80% of the run;
when the count of finished tasks passes one, a randomly chosen live node is
killed (SIGKILL; :mod:`benchmarks.scenarios.frozen` uses SIGSTOP instead).

After the run every accepted receipt is verified again offline, task ids are
checked for results accepted twice, and each node's receipt log (on disk; a
killed node's log survives) is read to count task ids executed on more than
one node (an attempt that timed out at the client but ran anyway).

The client gives each attempt at most ``attempt_timeout_s`` (3 s; a tiny-mlp
task takes milliseconds), so a frozen peer costs one attempt that long.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING, Any

import trio

from benchmarks.scenarios.common import Progress, mlp_input, testnet
from benchmarks.stats import summary
from mesh.errors import MeshError

if TYPE_CHECKING:
    from mesh.client.async_client import RunResult
    from mesh.testnet.launcher import Testnet

FAULT_FRACTION = 0.3


def plan(*, quick: bool, wan: str) -> list[dict[str, Any]]:
    return [plan_part(quick=quick, fault="kill")]


def plan_part(*, quick: bool, fault: str) -> dict[str, Any]:
    return {
        "nodes": 6 if quick else 10,
        "tasks": 200 if quick else 1000,
        "concurrency": 8,
        "seed": 7,
        "fault": fault,
        "attempt_timeout_s": 3.0,
    }


def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    progress.stage(f"starting {params['nodes']} nodes", 1)
    with testnet(params["nodes"]) as net:
        progress.advance()
        measured = trio.run(_measure, net, params, progress)
        measured["executed_twice"] = _executed_twice(net)
    return measured


async def _measure(net: Testnet, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from mesh.client.async_client import AsyncClient, ClientConfig
    from mesh.client.retry import RetryPolicy
    from mesh.core.receipts import verify_receipt

    rng = random.Random(params["seed"])
    tasks = params["tasks"]
    faulted = round(FAULT_FRACTION * params["nodes"])
    points = sorted(rng.randint(int(0.05 * tasks), int(0.8 * tasks)) for _ in range(faulted))
    victims = rng.sample(range(params["nodes"]), faulted)
    results: list[RunResult] = []
    errors: Counter[str] = Counter()
    finished_at: list[float] = []
    faults_at: list[float] = []
    run_ms: list[float] = []
    finished = 0
    config = ClientConfig(
        timeout_s=60.0, retry=RetryPolicy(attempt_timeout_s=params["attempt_timeout_s"])
    )
    async with AsyncClient.connect(bootstrap=net.bootstrap_addrs, config=config) as client:
        limiter = trio.CapacityLimiter(params["concurrency"])
        started = trio.current_time()

        def fault_due() -> None:
            while points and finished >= points[0]:
                points.pop(0)
                victim = victims.pop(0)
                if params["fault"] == "kill":
                    net.kill(victim)
                else:
                    net.freeze(victim)
                faults_at.append(trio.current_time() - started)

        async def one(i: int) -> None:
            nonlocal finished
            async with limiter:
                t0 = trio.current_time()
                try:
                    results.append(await client.run("tiny-mlp", mlp_input(i), timeout=60))
                    run_ms.append((trio.current_time() - t0) * 1000)
                    finished_at.append(trio.current_time() - started)
                except MeshError as exc:  # a failed task is counted by type, not fatal
                    errors[type(exc).__name__] += 1
            finished += 1
            progress.advance()
            fault_due()

        progress.stage(f"{tasks} tasks, {params['fault']} {faulted} of {params['nodes']}", tasks)
        async with trio.open_nursery() as nursery:
            for i in range(tasks):
                nursery.start_soon(one, i)
        wall_s = trio.current_time() - started
    verified = 0
    for result in results:
        verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
        verified += 1
    accepted = Counter(r.receipt.message.task_id for r in results)
    return {
        "tasks": tasks,
        "nodes": params["nodes"],
        "faulted": faulted,
        "fault": params["fault"],
        "completed": len(results),
        "retried": sum(1 for r in results if r.attempts > 1),
        "attempts": sum(r.attempts for r in results),
        "failed": sum(errors.values()),
        "errors": dict(errors),
        "duplicates_accepted": sum(1 for n in accepted.values() if n > 1),
        "receipts_verified": verified,
        "workers_used": len({r.worker for r in results}),
        "wall_s": wall_s,
        "run_ms": run_ms,
        "completed_at_s": finished_at,
        "faults_at_s": faults_at,
    }


def _executed_twice(net: Testnet) -> int:
    """Task ids that appear in more than one node's receipt log."""
    from mesh.node.receipt_log import read_receipts

    seen: Counter[bytes] = Counter()
    for node in net.nodes:
        path = node.config.receipt_log_path
        if path.exists():
            seen.update({r.message.task_id for r in read_receipts(path)})
    return sum(1 for n in seen.values() if n > 1)


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    part = parts[0]
    figures = {
        key: part[key]
        for key in (
            "completed",
            "retried",
            "failed",
            "duplicates_accepted",
            "receipts_verified",
            "executed_twice",
            "tasks",
            "nodes",
            "faulted",
            "attempts",
            "workers_used",
            "errors",
        )
    }
    figures["fault"] = "killed" if part["fault"] == "kill" else "frozen"
    figures["wall_s"] = round(part["wall_s"], 2)
    figures["tasks_per_s"] = round(part["completed"] / part["wall_s"], 1)
    if part["run_ms"]:
        figures["run_ms"] = summary(part["run_ms"])
    figures["samples"] = {
        "completed_at_s": [round(t, 3) for t in part["completed_at_s"]],
        "faults_at_s": [round(t, 3) for t in part["faults_at_s"]],
    }
    return figures
