"""Streaming through the gateway against in-process generation, and continuous vs static batching.

Run from the repository root (prints one JSON object)::

    python -m benchmarks.bench_streaming [--models tiny-gpt bench-gpt] [--concurrency 1 8 32]
        [--requests 2] [--rounds 2] [--max-batch 32] [--threads 1] [--quick]

Per model, in one run on one machine:

- ``streaming``: at each concurrency ``c``, ``c`` clients each send ``--requests``
  generations one after another (a closed loop), on two paths that alternate
  round by round:

  - ``in_process``: ``Executor.run`` in this process (continuous batching,
    ``--max-batch``, ``--threads`` torch threads), the baseline;
  - ``gateway``: ``POST /v1/chat/completions`` with ``stream: true`` to a
    ``mesh gateway`` process, whose mesh client streams from one node process
    (:mod:`benchmarks.stream_node`: the same executor settings) over libp2p.

  The same prompts (the chat template rendered as the gateway renders it),
  seeds and parameters on both paths, so both generate the same tokens.
  Figures: ``tokens_per_s`` (generated tokens over the level's wall time),
  ``ttft_ms`` p50/p95 (in-process: submission to the first token hook call;
  gateway: the request sent to its first server-sent event, which the gateway
  writes once the first token reached it), and ``gateway_over_in_process``.
- ``batching``: continuous against static batching with staggered (Poisson)
  arrivals, in process: :func:`benchmarks.bench_batching.compare` on the same model.

``machine`` records the CPU count and the load average before and after each
model (the development machine is shared: every figure is from one run, with
its same-run baseline).

Models: ``tiny-gpt`` (2 layers of 64: a step costs microseconds, so the figures
are dominated by the per-token cost of the path) and ``bench-gpt`` (the same
architecture with 6 layers of 384, seeded weights written to a temporary zoo: a
step of 32 sequences costs tens of milliseconds on one CPU thread, closer to a
real model's ratio of compute to per-token overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import trio

from benchmarks import bench_batching
from benchmarks.stats import percentile

READY_TIMEOUT_S = 180.0
REPO = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "Tell me about the mesh."}]
TEMPERATURE_MILLI = 800
BENCH_GPT = {"n_embd": 384, "n_layer": 6, "n_head": 6}

_BENCH_GPT_MANIFEST = """name = "bench-gpt"
kind = "generate"
description = "tiny-gpt's architecture at 6 layers of 384, seeded weights (benchmarks only)."
model_root = "{root}"
dtype = "float32"

[architecture]
file = "builtin:gpt2/model.py"
config = {{ vocab_size = 257, n_positions = 512, n_embd = {n_embd}, n_layer = {n_layer}, \
n_head = {n_head} }}

[weights]
source = "seed"
seed = 4242

[tokenizer]
kind = "bytes"
eos_id = 256

[inputs.prompt]
dtype = "str"
shape = [1]
optional = true

[inputs.prompt_ids]
dtype = "int64"
shape = [-1]
optional = true

[outputs.text]
dtype = "str"
shape = [1]

[outputs.token_ids]
dtype = "int64"
shape = [-1]

[limits]
max_tokens = 128
max_prompt_tokens = 256
"""


def write_bench_gpt(zoo: Path) -> None:
    """A zoo entry ``bench-gpt`` with its model_root computed from its seeded weights."""
    from mesh.runtime.manifest import load_manifest
    from mesh.runtime.weights import build_model

    entry = zoo / "bench-gpt"
    entry.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "models" / "tiny-gpt" / "tokenizer_config.json", entry)
    text = _BENCH_GPT_MANIFEST.replace("\\\n", "").format(root="{root}", **BENCH_GPT)
    manifest = entry / "manifest.toml"
    manifest.write_text(text.replace('model_root = "{root}"\n', ""))
    _, root = build_model(load_manifest(manifest), None)
    manifest.write_text(text.replace("{root}", root.hex()))


# -- processes --------------------------------------------------------------------------
class Process:
    """A child process whose stdout lines are read by a thread (waits have deadlines)."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.lines: Queue[str] = Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, prefix: str) -> str:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                self.stop()
                raise SystemExit(f"no line starting {prefix!r} in time") from None
            if line.startswith(prefix):
                return line.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_mesh(
    model: str, zoo: Path, work: Path, *, max_batch: int, threads: int
) -> tuple[Process, Process, str]:
    """The model's node and a gateway in front of it; returns them and the gateway URL."""
    node = Process(
        [sys.executable, "-m", "benchmarks.stream_node", "--model", model, "--zoo", str(zoo),
         "--max-batch", str(max_batch), "--threads", str(threads)]
    )  # fmt: skip
    words = node.wait_for("node ").split()
    peer_id, addrs = words[1], words[3:-2]
    bootstrap = work / "bootstrap.txt"
    full = [a if "/p2p/" in a else f"{a}/p2p/{peer_id}" for a in addrs]
    bootstrap.write_text("".join(f"{a}\n" for a in full))
    gateway = Process(
        [sys.executable, "-m", "mesh", "gateway", "--bootstrap", str(bootstrap),
         "--listen", "127.0.0.1:0", "--zoo", str(zoo), "--timeout", "600"]
    )  # fmt: skip
    url = gateway.wait_for("gateway listening ").split()[2]
    return node, gateway, url


# -- the two paths ----------------------------------------------------------------------
def _level_figures(
    tokens: int, wall_s: float, ttft_s: list[float], cpu_s: dict[str, float]
) -> dict[str, float]:
    ttft_ms = [t * 1000 for t in ttft_s]
    figures = {
        "tokens": tokens,
        "wall_s": round(wall_s, 3),
        "tokens_per_s": round(tokens / wall_s, 1),
        "ttft_ms_p50": round(percentile(ttft_ms, 50), 2),
        "ttft_ms_p95": round(percentile(ttft_ms, 95), 2),
    }
    # CPU time each process spent on the level, per generated token (who pays for what).
    for name, seconds in cpu_s.items():
        figures[f"cpu_ms_per_token_{name}"] = round(seconds * 1000 / tokens, 3)
    return figures


class CpuMeter:
    """CPU seconds (user + system) of this process and of the given child processes."""

    def __init__(self, children: dict[str, int]) -> None:
        import psutil

        self._children = {name: psutil.Process(pid) for name, pid in children.items()}
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        now = {"client": time.process_time()}
        for name, proc in self._children.items():
            times = proc.cpu_times()
            now[name] = times.user + times.system
        return now

    def spent(self) -> dict[str, float]:
        end = self._now()
        return {name: end[name] - self._start[name] for name in end}


async def in_process_level(
    executor: Any, root: bytes, prompt: str, concurrency: int, requests: int, max_tokens: int
) -> dict[str, float]:
    """``concurrency`` closed-loop clients of ``executor.run``."""
    ttft: list[float] = []
    tokens = 0

    async def client(index: int) -> None:
        nonlocal tokens
        for r in range(requests):
            params = _params(index * requests + r, max_tokens)
            sent = trio.current_time()
            first: list[float] = []

            def on_tokens(ids: list[int], first: list[float] = first, sent: float = sent) -> None:
                if not first:
                    first.append(trio.current_time() - sent)

            result = await executor.run(root, {"prompt": [prompt]}, params, on_tokens=on_tokens)
            ttft.append(first[0])
            tokens += result.outputs["token_ids"].shape[0]

    cpu = CpuMeter({})
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for index in range(concurrency):
            nursery.start_soon(client, index)
    # This process runs the model here: its CPU is the generation's (``client`` = all).
    return _level_figures(tokens, trio.current_time() - start, ttft, cpu.spent())


async def gateway_level(
    url: str,
    model: str,
    concurrency: int,
    requests: int,
    max_tokens: int,
    pids: dict[str, int] | None = None,
) -> dict[str, float]:
    """``concurrency`` closed-loop clients streaming chat completions from the gateway."""
    import httpx

    ttft: list[float] = []
    tokens = 0
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:

        async def client(index: int) -> None:
            nonlocal tokens
            for r in range(requests):
                params = _params(index * requests + r, max_tokens)
                body = {
                    "model": model,
                    "messages": MESSAGES,
                    "max_tokens": max_tokens,
                    "temperature": params["temperature_milli"] / 1000,
                    "seed": params["seed"],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                sent = time.perf_counter()
                first: float | None = None
                async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        detail = (await response.aread()).decode(errors="replace")
                        raise SystemExit(f"gateway answered {response.status_code}: {detail}")
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        if first is None:
                            first = time.perf_counter() - sent
                        data = line[len("data: ") :]
                        if data == "[DONE]":
                            break
                        chunk = json.loads(data)
                        if "error" in chunk:
                            raise SystemExit(f"stream failed: {chunk['error']}")
                        if chunk.get("usage"):
                            tokens += chunk["usage"]["completion_tokens"]
                assert first is not None
                ttft.append(first)

        cpu = CpuMeter(pids or {})
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for index in range(concurrency):
                nursery.start_soon(client, index)
        return _level_figures(tokens, time.perf_counter() - start, ttft, cpu.spent())


def _params(seed: int, max_tokens: int) -> dict[str, int]:
    # As the gateway maps a chat request with temperature 0.8 and no top_p.
    return {
        "max_tokens": max_tokens,
        "temperature_milli": TEMPERATURE_MILLI,
        "top_p_milli": 1000,
        "seed": seed,
    }


def _median(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]}


def measure_model(model: str, zoo: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from mesh.gateway.catalog import Catalog
    from mesh.runtime.executor import Executor
    from mesh.runtime.registry import load_model
    from mesh.runtime.zoo import find_manifest

    load_before = os.getloadavg()
    loaded = load_model(find_manifest(model, [zoo]), device="cpu")
    catalog = Catalog([zoo])
    prompt = catalog.chat_template(catalog.entry(model, kind="generate")).render(tuple(MESSAGES))
    node, gateway, url = start_mesh(
        model, zoo, work, max_batch=args.max_batch, threads=args.threads
    )
    levels: dict[str, Any] = {}
    try:
        for concurrency in args.concurrency:
            rounds: dict[str, list[dict[str, float]]] = {"in_process": [], "gateway": []}

            async def both(
                concurrency: int = concurrency,
                rounds: dict[str, list[dict[str, float]]] = rounds,
            ) -> None:
                executor = Executor([loaded], max_batch=args.max_batch, max_queue=1024)
                # Warm both paths (first requests pay for connections and caches).
                async with executor.running():
                    await in_process_level(
                        executor, loaded.model_root, prompt, 1, 1, args.max_tokens
                    )
                await gateway_level(url, model, 1, 1, args.max_tokens)
                for _ in range(args.rounds):
                    async with executor.running():
                        rounds["in_process"].append(
                            await in_process_level(
                                executor,
                                loaded.model_root,
                                prompt,
                                concurrency,
                                args.requests,
                                args.max_tokens,
                            )
                        )
                    rounds["gateway"].append(
                        await gateway_level(
                            url,
                            model,
                            concurrency,
                            args.requests,
                            args.max_tokens,
                            {"node": node.proc.pid, "gateway": gateway.proc.pid},
                        )
                    )

            trio.run(both)
            inp, gw = _median(rounds["in_process"]), _median(rounds["gateway"])
            levels[f"c{concurrency}"] = {
                "concurrency": concurrency,
                "requests": concurrency * args.requests,
                "in_process": inp,
                "gateway": gw,
                "gateway_over_in_process": {
                    "tokens_per_s": round(gw["tokens_per_s"] / inp["tokens_per_s"], 3),
                    "ttft_ms_p50": round(gw["ttft_ms_p50"] / inp["ttft_ms_p50"], 3),
                },
            }
    finally:
        gateway.stop()
        node.stop()
    tasks = bench_batching.tasks_for(loaded, args.batching_tasks, max_tokens=(8, args.max_tokens))
    capacity = bench_batching.capacity_tokens_per_s(loaded, tasks, args.max_batch)
    batching = {
        f"load_{load:g}": bench_batching.compare(
            loaded,
            tasks,
            capacity=capacity,
            load=load,
            repeats=args.batching_repeats,
            max_batch=args.max_batch,
        )
        for load in args.batching_load
    }
    return {
        "max_tokens": args.max_tokens,
        "max_batch": args.max_batch,
        "runtime": loaded.runtime_claim(args.max_batch),
        "streaming": levels,
        "batching": {"capacity_tokens_per_s": round(capacity, 1), **batching},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-gpt", "bench-gpt"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=2, help="per client and level")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per level")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batching-tasks", type=int, default=64)
    parser.add_argument("--batching-load", type=float, nargs="+", default=[0.5, 2.0])
    parser.add_argument("--batching-repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny-gpt, small levels")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.concurrency, args.requests, args.rounds = ["tiny-gpt"], [1, 4], 1, 1
        args.max_tokens, args.batching_tasks, args.batching_load = 8, 8, [2.0]
    from mesh.runtime.device import configure_determinism

    configure_determinism(threads=args.threads)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        work = Path(tmp)
        zoo = work / "zoo"
        zoo.mkdir()
        if "bench-gpt" in args.models:
            write_bench_gpt(zoo)
        for model in args.models:
            results[model] = measure_model(model, zoo, work, args)
    doc = {
        "benchmark": "streaming",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
        },
        "settings": {
            "concurrency": args.concurrency,
            "requests_per_client": args.requests,
            "rounds": args.rounds,
            "temperature_milli": TEMPERATURE_MILLI,
        },
        "models": results,
    }
    json.dump(doc, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
