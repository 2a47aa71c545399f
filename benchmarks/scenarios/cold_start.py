"""``cold_start``: a new client process to its first verified result.

A 3-node testnet serves tiny-mlp. For each run, a brand-new Python process is
started (``python -c`` with the client code below: import the SDK, open libp2p,
bootstrap, find a provider, send the task, verify the receipt); the clock runs
from just before the process is spawned until it prints the verified result.
The child also reports when its imports finished and when its client was
connected, by its own clock, for a breakdown.

A second timing runs the ``mesh run`` command itself (``python -m mesh run``)
to its exit, which adds the client's shutdown: what a shell user waits for.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.scenarios.common import Progress, testnet
from benchmarks.stats import summary

# Runs in the new process. Prints one JSON line once the result is verified
# (AsyncClient.run only returns verified results; verify_receipt checks again).
CLIENT_CODE = """
import time
t0 = time.perf_counter()
import json, struct, sys
import trio
from mesh.client.async_client import AsyncClient
from mesh.core.receipts import verify_receipt
from mesh.core.tensors import Tensor
t_import = time.perf_counter() - t0

async def main():
    x = Tensor("float32", (1, 32), struct.pack("<32f", *[0.5] * 32))
    async with AsyncClient.connect(bootstrap=sys.argv[1]) as client:
        t_connect = time.perf_counter() - t0
        result = await client.run("tiny-mlp", {"x": x}, timeout=60)
        verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
        t_result = time.perf_counter() - t0
        print(json.dumps({"import_s": t_import, "connect_s": t_connect,
                          "result_s": t_result, "worker": result.worker}), flush=True)

trio.run(main)
"""

MLP_JSON = json.dumps({"x": [[0.25] * 32]})


def plan(*, quick: bool, wan: str) -> list[dict[str, Any]]:
    return [{"runs": 1 if quick else 5, "cli_runs": 1 if quick else 3}]


def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    progress.stage("starting 3 nodes", 1)
    results: list[dict[str, Any]] = []
    cli_s: list[float] = []
    with testnet(3) as net, tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        progress.advance()
        bootstrap = Path(tmp) / "bootstrap.txt"
        net.write_bootstrap_file(bootstrap)
        progress.stage("new client processes", params["runs"] + params["cli_runs"])
        for _ in range(params["runs"]):
            results.append(_one_sdk_run(bootstrap))
            progress.advance()
        for _ in range(params["cli_runs"]):
            cli_s.append(_one_cli_run(bootstrap))
            progress.advance()
    return {"runs": results, "cli_s": cli_s}


def _one_sdk_run(bootstrap: Path) -> dict[str, Any]:
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-c", CLIENT_CODE, str(bootstrap)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.monotonic() - started
        proc.wait(timeout=60)
    if not line.strip():
        raise RuntimeError(f"the client process printed no result (exit code {proc.returncode})")
    report: dict[str, Any] = json.loads(line)
    report["cold_start_s"] = elapsed
    return report


def _one_cli_run(bootstrap: Path) -> float:
    started = time.monotonic()
    command = [sys.executable, "-m", "mesh", "run", "tiny-mlp", "--bootstrap", str(bootstrap)]
    command += ["--input", MLP_JSON, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    elapsed = time.monotonic() - started
    if "receipt" not in json.loads(done.stdout):
        raise RuntimeError("mesh run printed no receipt")
    return elapsed


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    runs = parts[0]["runs"]
    cold = summary([r["cold_start_s"] for r in runs])
    return {
        "cold_start_s": cold["p50"],
        "cold_start_runs_s": [round(r["cold_start_s"], 3) for r in runs],
        "child_import_s": summary([r["import_s"] for r in runs])["p50"],
        "child_connected_s": summary([r["connect_s"] for r in runs])["p50"],
        "child_result_s": summary([r["result_s"] for r in runs])["p50"],
        "mesh_run_command_s": summary(parts[0]["cli_s"])["p50"] if parts[0]["cli_s"] else None,
    }
