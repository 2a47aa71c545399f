"""Smoke test of ``python -m benchmarks``: quick mode of two cheap scenarios in a subprocess.

Checks that the run writes results.json with the named figures (sane types and
ranges, not speeds), the machine section, summary.md and the overhead plot;
and that ``--wan=netns`` stops with a reason where namespaces or netem are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.testnet.wan import check_support

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_quick_overhead_and_cold_start_write_named_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    done = _bench("overhead", "cold_start", "--quick", "--out", str(out), timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())

    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["libp2p"] and machine["torch"]
    assert results["run"]["mode"] == "quick"

    overhead = results["overhead"]
    assert isinstance(overhead["overhead_p50_ms"], float)
    assert isinstance(overhead["overhead_p99_ms"], float)
    assert overhead["overhead_p50_ms"] <= overhead["overhead_p99_ms"]
    assert overhead["tasks"] == 200
    # Request time includes the compute the receipt brackets, give or take its 1 ms rounding.
    assert overhead["overhead_ms"]["min"] > -1.0
    assert overhead["request_ms"]["p50"] > 0

    cold = results["cold_start"]
    assert isinstance(cold["cold_start_s"], float)
    assert cold["child_import_s"] < cold["child_connected_s"] <= cold["child_result_s"]
    assert cold["cold_start_s"] >= cold["child_result_s"]  # the parent's clock includes start-up

    summary = (out / "summary.md").read_text()
    assert "## overhead" in summary and "## cold_start" in summary and "## Machine" in summary
    assert (out / "overhead.png").stat().st_size > 1000
    samples = json.loads((out / "samples.json").read_text())
    assert len(samples["overhead"]["overhead_ms"]) == 200


def test_wan_netns_stops_with_the_reason_when_unsupported(tmp_path: Path) -> None:
    problem = check_support()
    if problem is None:
        pytest.skip("this machine can run the namespace WAN: nothing to refuse")
    done = _bench("wan", "--wan", "--quick", "--out", str(tmp_path / "w"), timeout=60)
    assert done.returncode == 2
    assert "cannot run here" in done.stderr and problem.split(":")[0] in done.stderr
    assert not (tmp_path / "w").exists()  # stopped before making anything


def test_streaming_benchmark_quick_prints_named_figures() -> None:
    # A smoke run (tiny-gpt, small levels): figures present and sane, not speeds.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_streaming", "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    model = doc["models"]["tiny-gpt"]
    assert len(model["load_average_before"]) == 3
    for level in ("c1", "c4"):
        figures = model["streaming"][level]
        inp, gw = figures["in_process"], figures["gateway"]
        assert inp["tokens"] == gw["tokens"] > 0  # the same tokens on both paths
        assert gw["tokens_per_s"] > 0 and gw["ttft_ms_p50"] > 0
        # CPU times tick in 10 ms: a smoke level's few tokens may read 0 for a process.
        assert gw["cpu_ms_per_token_node"] >= 0 and gw["cpu_ms_per_token_gateway"] >= 0
        assert isinstance(figures["gateway_over_in_process"]["tokens_per_s"], float)
    batching = model["batching"]["load_2"]
    assert batching["identical_outputs"] is True
    assert set(batching["continuous_over_static"]) >= {"tokens_per_s", "ttft_ms_p50"}
