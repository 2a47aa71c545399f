"""Continuous vs static batching of generation, with staggered arrivals, in one run.

The same tasks (varied prompt and output lengths, seeded) arrive at the same
times (a seeded Poisson schedule) to two executors that differ only in
``continuous``: *static* runs each batch to its end while later tasks wait;
*continuous* lets them join the running batch at the next step. The arrival
rate is calibrated on this machine as a fraction of its capacity: *capacity* is
the tokens per second of one full static batch (``max_batch`` of the tasks run
together, median of 3), and at ``--load L`` tasks arrive so that they ask for
``L`` times that many tokens per second (below 1: the device keeps up and idles
between arrivals; above 1: a queue builds up).
Modes alternate (static, continuous, static, ...) for ``--repeats`` rounds and
each figure is the median over rounds.

Figures per model and mode: ``tokens_per_s`` (generated tokens over the time
from the first arrival to the last result), time to first token (submission to
the first ``on_tokens`` call; under static batching that is the end of the
task's batch, when its tokens first become visible), latency (submission to
result), p50 and p95; plus ``continuous_over_static`` ratios and
``identical_outputs`` (every task's ids and commitment equal in both modes).

Prints one JSON object. Run from the repository root::

    python -m benchmarks.bench_batching [--tasks 64] [--load 0.5 0.9 2] [--repeats 2]
        [--gpt2-random [--gpt2-tasks 12]] [--device auto] [--threads N]

On a CPU shared with other processes pass ``--threads 1``: with two OpenMP
threads on two busy cores a tiny-gpt step of 8 sequences was measured at 51 ms
instead of 0.8 ms (threads spinning against each other), which drowns the
comparison in noise.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import trio

from benchmarks.bench_runtime import random_gpt2, torch_machine
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.runtime.convert import from_torch
from mesh.runtime.device import configure_determinism
from mesh.runtime.executor import Execution, Executor
from mesh.runtime.registry import LoadedModel, load_model
from mesh.runtime.zoo import Zoo

Task = tuple[Values, dict[str, int]]
SAMPLED = {"temperature_milli": 800, "top_k": 40}


def tasks_for(model: LoadedModel, count: int, *, max_tokens: tuple[int, int]) -> list[Task]:
    """Seeded tasks: prompts of 4-48 tokens, outputs of ``max_tokens`` (low, high) tokens."""
    rng = random.Random(0)
    vocab = model.generator().vocab
    tasks: list[Task] = []
    for i in range(count):
        prompt = [rng.randrange(vocab - 1) for _ in range(rng.randint(4, 48))]
        params = {**SAMPLED, "seed": i, "max_tokens": rng.randint(*max_tokens)}
        tasks.append(({"prompt_ids": from_torch(torch.tensor(prompt, dtype=torch.int64))}, params))
    return tasks


def arrivals(count: int, mean_gap_s: float) -> list[float]:
    """Seeded Poisson arrival offsets (seconds from the start), the first at 0."""
    rng = random.Random(1)
    offsets, now = [], 0.0
    for _ in range(count):
        offsets.append(now)
        now += rng.expovariate(1.0 / mean_gap_s)
    return offsets


async def _run_mode(
    model: LoadedModel, tasks: list[Task], offsets: list[float], *, continuous: bool, max_batch: int
) -> tuple[dict[str, float], list[Execution]]:
    executor = Executor([model], max_batch=max_batch, max_queue=len(tasks), continuous=continuous)
    first: list[float | None] = [None] * len(tasks)
    done: list[float] = [0.0] * len(tasks)
    results: list[Execution | None] = [None] * len(tasks)

    async def one(i: int, start: float) -> None:
        await trio.sleep_until(start + offsets[i])
        submitted = trio.current_time()

        def on_tokens(new: list[int]) -> None:
            if first[i] is None:
                first[i] = trio.current_time() - submitted

        results[i] = await executor.run(model.model_root, *tasks[i], on_tokens=on_tokens)
        done[i] = trio.current_time() - submitted

    async with executor.running():
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(len(tasks)):
                nursery.start_soon(one, i, start)
        elapsed = trio.current_time() - start
    finished = [r for r in results if r is not None]
    tokens = sum(_token_ids(r).shape[0] for r in finished)
    ttft = [f * 1000.0 for f in first if f is not None]
    latency = [d * 1000.0 for d in done]
    figures = {
        "tokens_per_s": tokens / elapsed,
        "ttft_ms_p50": _pct(ttft, 50),
        "ttft_ms_p95": _pct(ttft, 95),
        "latency_ms_p50": _pct(latency, 50),
        "latency_ms_p95": _pct(latency, 95),
        "mean_batch_size": statistics.mean(r.batch_size for r in finished),
        "wall_s": elapsed,
    }
    return figures, finished


def _token_ids(result: Execution) -> Tensor:
    value = result.outputs["token_ids"]
    assert isinstance(value, Tensor)
    return value


def _pct(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def capacity_tokens_per_s(model: LoadedModel, tasks: list[Task], max_batch: int) -> float:
    """Tokens per second of one full static batch (median of 3, after a warm-up)."""
    batch = tasks[:max_batch]
    tokens = sum(p["max_tokens"] for _, p in batch)
    model.run_batch(batch[:2])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.run_batch(batch)
        times.append(time.perf_counter() - start)
    return tokens / statistics.median(times)


def compare(
    model: LoadedModel,
    tasks: list[Task],
    *,
    capacity: float,
    load: float,
    repeats: int,
    max_batch: int,
) -> dict[str, Any]:
    """Both modes on one arrival schedule; medians over alternating rounds."""
    mean_tokens = statistics.mean(p["max_tokens"] for _, p in tasks)
    gap = mean_tokens / (load * capacity)
    offsets = arrivals(len(tasks), gap)
    rounds: dict[str, list[dict[str, float]]] = {"static": [], "continuous": []}
    outputs: dict[str, list[tuple[bytes, bytes]]] = {}
    for _ in range(repeats):
        for mode in ("static", "continuous"):
            measured, results = trio.run(
                lambda mode=mode: _run_mode(
                    model, tasks, offsets, continuous=mode == "continuous", max_batch=max_batch
                )
            )
            rounds[mode].append(measured)
            outputs[mode] = [(_token_ids(r).data, r.commitment) for r in results]
    report: dict[str, Any] = {
        "tasks": len(tasks),
        "max_batch": max_batch,
        "max_tokens_mean": round(mean_tokens, 1),
        "offered_tokens_per_s": round(load * capacity, 1),
        "mean_arrival_gap_ms": round(gap * 1000.0, 2),
        "repeats": repeats,
    }
    for mode, figures in rounds.items():
        report[mode] = {
            key: round(statistics.median(f[key] for f in figures), 3) for key in figures[0]
        }
    s, c = report["static"], report["continuous"]
    report["continuous_over_static"] = {
        "tokens_per_s": round(c["tokens_per_s"] / s["tokens_per_s"], 3),
        "ttft_ms_p50": round(c["ttft_ms_p50"] / s["ttft_ms_p50"], 3),
        "ttft_ms_p95": round(c["ttft_ms_p95"] / s["ttft_ms_p95"], 3),
        "latency_ms_p50": round(c["latency_ms_p50"] / s["latency_ms_p50"], 3),
    }
    report["identical_outputs"] = outputs["static"] == outputs["continuous"]
    report["runtime"] = model.runtime_claim(max_batch)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tasks", type=int, default=64, help="tiny-gpt tasks per round")
    parser.add_argument(
        "--load",
        type=float,
        nargs="+",
        default=[0.5, 0.9, 2.0],
        help="offered tokens/s as a fraction of one full static batch's (one run per value)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="rounds per mode (alternating)")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--gpt2-random", action="store_true", help="also gpt2 on random weights")
    parser.add_argument("--gpt2-tasks", type=int, default=12)
    args = parser.parse_args(argv)
    configure_determinism(threads=args.threads)
    zoo = Zoo.builtin()
    plan: list[tuple[str, dict[str, Any], int, tuple[int, int]]] = [
        ("tiny-gpt", {}, args.tasks, (8, 96)),
    ]
    skipped: dict[str, str] = {}
    if args.gpt2_random:
        folder = random_gpt2(zoo, Path(tempfile.mkdtemp(prefix="bench-gpt2-")))
        plan.append(("gpt2", {"weights_dir": folder}, args.gpt2_tasks, (4, 32)))
    else:
        skipped["gpt2"] = "no --gpt2-random"
    results: dict[str, Any] = {}
    for name, extra, count, lengths in plan:
        model = load_model(zoo.manifest(name), device=args.device, **extra)
        tasks = tasks_for(model, count, max_tokens=lengths)
        capacity = capacity_tokens_per_s(model, tasks, args.max_batch)
        results[name] = {"capacity_tokens_per_s": round(capacity, 1)}
        for load in args.load:
            results[name][f"load_{load:g}"] = compare(
                model,
                tasks,
                capacity=capacity,
                load=load,
                repeats=args.repeats,
                max_batch=args.max_batch,
            )
    report = {
        "machine": torch_machine(),
        "models": results,
        "skipped": skipped,
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
