"""Write a benchmark run: ``results.json``, ``samples.json``, ``summary.md`` and PNG plots.

The summary explains each figure, says which aim it is measured against and
whether the run met it, names the machine, and says how to reproduce the run.
Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# name -> [(figure key, comparison, bound, the aim in words)]
AIMS: dict[str, list[tuple[str, str, float, str]]] = {
    "overhead": [
        ("overhead_p50_ms", "<=", 2.0, "overhead p50 at most 2 ms warm (Ray Serve: 1-2 ms)"),
    ],
    "efficiency": [
        (
            "efficiency_tiny_mlp_batched",
            ">=",
            0.9,
            "efficiency at least 0.9 on tiny-mlp against in-process, same batching (batched map)",
        ),
        (
            "efficiency_minilm_l6_batched",
            ">=",
            0.95,
            "efficiency at least 0.95 on minilm-l6 (batched map)",
        ),
    ],
    "discovery": [
        ("discovery_p50_ms_40", "<=", 50.0, "discovery p50 at most 50 ms cold on 40 nodes"),
        ("warm_discovery_p50_ms_40", "<=", 1.0, "at most 1 ms warm on 40 nodes"),
        ("choice_p50_ms_40", "<=", 50.0, "cold on 40 nodes, to the choice (no dial)"),
        ("warm_choice_p50_ms_40", "<=", 1.0, "warm on 40 nodes, to the choice (no dial)"),
        ("testnet_ready_s_100", "<=", 30.0, "a 100-node testnet ready within 30 s"),
        ("pss_mb_per_node_mean_100", "<=", 40.0, "at most 40 MB PSS per node of 100"),
    ],
    "verification": [
        (
            "caught_within_60_lower95",
            ">=",
            0.95,
            "a worker faking 5% of results caught with probability >= 0.95 within 60 faked "
            "results at the default audit rate (lower end of the 95% interval)",
        ),
    ],
    "cold_start": [
        ("cold_start_s", "<=", 1.5, "a fresh client process to its verified result in 1.5 s"),
        ("mesh_run_command_s", "<=", 1.5, "a fresh `mesh run` process to its result in 1.5 s"),
    ],
}

EXPLAIN: dict[str, str] = {
    "overhead": (
        "One node serves tiny-mlp (max_batch=1, so no batching wait); one client sends tasks one "
        "after another on a warm connection. `overhead_ms` = the client's request time for the "
        "successful attempt minus the receipt's `finished_ms - started_ms` (which brackets the "
        "node's executor call: queue + forward pass, in whole milliseconds). `request_ms` is the "
        "client's request time, `receipt_compute_ms` what the node's receipts say, "
        "`inprocess_compute_ms` the forward pass timed in-process, and `run_call_ms` the whole "
        "`AsyncClient.run` call (signing, provider lookup, request, receipt verification)."
    ),
    "efficiency": (
        "Tasks per second through the mesh (one node, max_batch=16) divided by tasks per second "
        "through the same Executor (same max_batch and 5 ms window) called in-process in the "
        "benchmark process with as many tasks in flight. Per-task: one client keeps 16 tasks in "
        "flight (the top-level figures). Batched (`efficiency_*_batched`, `other_parts`): `map` "
        "sends batched tasks (one signature and one receipt per batch, each item provable alone) "
        "of `batch` items, `concurrency` batches in flight. The two alternate for several rounds "
        "(same background load for both) and the best round of each counts: background load "
        "only ever slows a run down."
    ),
    "discovery": (
        'For each testnet size, a client with an empty record book asks "who serves tiny-mlp": '
        "one record-exchange round with its bootstrap peers (each answers with the live signed "
        "capacity records it holds; every record is checked), then scores, picks one and checks "
        "it is live (connects). `warm_*`: the same with the client's long-lived book (no network). "
        "`choice_*`: the same trials timed to the choice, before the liveness check (a warm "
        "pick among many unmeasured peers is often one never dialled, and a dial is ~5 ms). "
        "`provider_lookup_p50_ms`: a DHT provider lookup alone, for comparison. "
        "`pss_mb_per_node` is the proportional set size of each node process "
        "(`/proc/<pid>/smaps_rollup`), shared copy-on-write pages split between sharers; "
        "`node_cpu_percent_mean` the CPU each node used (of one core) while the trials ran; "
        "`testnet_ready_s` from the launch to a fresh client seeing every node; `load_1m_*` the "
        "machine's load average then."
    ),
    "simulation": (
        "The real record exchange, record books, node announcements and client discovery on an "
        "in-memory mesh of 100 to 10,000 peers with a latency model (5 regions, 5-150 ms one "
        "way, 1-10 ms access delay each end) on a virtual clock; the DHT's lookup time is "
        "modelled (ceil(log2 N / 3) rounds of the slowest of 3 round trips), not walked. "
        "`cold_discovery_round_trips`: cold discovery time over the round-trip time to the "
        "nearest bootstrap peer. Per-node traffic is bytes sent and received over one refresh "
        "period (60 s) in which every node announces once and the fresh clients arrive. See "
        "benchmarks/scenarios/simulation.py for what is real and what is modelled."
    ),
    "cold_start": (
        "A brand-new client process (`python -c` with the SDK) started against a running "
        "3-node testnet, timed from just before it is spawned until it prints its first "
        "verified result (imports, libp2p start-up, bootstrap, provider lookup, task, receipt "
        "verification); `child_*_s` are the child's own clock at each step. "
        "`mesh_run_command_s` times the `mesh run` command to its exit (which adds shutdown)."
    ),
    "churn": (
        "A client runs the tasks (several in flight) while 30% of the nodes are killed (SIGKILL) "
        "at random points of the run. `completed`: tasks with a verified result; `retried`: tasks "
        "that needed more than one attempt; `failed`: tasks that raised; `duplicates_accepted`: "
        "task ids for which the client accepted more than one result; `receipts_verified`: "
        "receipts re-verified offline after the run; `executed_twice`: task ids found in more "
        "than one node's receipt log (a timed-out attempt that ran anyway: visible, never paid "
        "twice, since both receipts bind the same task id)."
    ),
    "frozen": (
        "The churn scenario with nodes frozen by SIGSTOP instead of killed: their sockets stay "
        "open and nothing answers, so each affected attempt waits for its per-attempt deadline."
    ),
    "attacks": (
        "Issue 10's table, one attack per part (its own testnet): an honest client sends tiny-mlp "
        "tasks one after another, first alone (baseline), then while an attacker process attacks "
        "(the node it targets, or the mesh), then after. Per attack: the honest success rate and "
        "p50 latency beside the same run's baseline (`p50_ratio`), the attacked node's RSS before, "
        "at its highest during and after (MiB), the node's log lines and tracebacks during the "
        "attack, and the attacker's own counters. The attacker shares the machine's cores with the "
        "node and the client (an attacker elsewhere would not): the figures include that. "
        "The Sybil-provider row belongs to the "
        "discovery rework (issue 13) and is reported as measured."
    ),
    "verification": (
        "Liars among honest workers, three sources. **Simulation** (`caught_within_60`, "
        "`simulated`, the plot): the client's own audit code (the HMAC draw after each receipt, "
        "the newcomer rule of its reputation) against one worker faking each result with "
        "probability f, many trials; detection within n faked results beside 1 - (1 - p)^n. "
        "**Memory** (`memory`, `memory_all_honest`, `extra_compute_default_rate`): real "
        "client and node code over the in-memory network on a virtual clock, 5 nodes, one liar "
        "(`rate:0.05`, `perturb`, `lazy`), audit at the default rate: tasks and faked results "
        "until the liar's first verdict, wrong results returned before and after it, verdicts "
        "against honest nodes, extra compute = requests served / tasks - 1 (all-honest run: the "
        "cost of auditing alone). **Testnet** (`testnet_audit`, `testnet_redundant`): real "
        "processes serving tiny-mlp with a `rate:0.2` and a `lazy` node; every result compared "
        "with the model run in the benchmark process; extra compute counted from the nodes' "
        "receipt logs."
    ),
    "wan": (
        "Nodes spread over regions with realistic round-trip times between them (approximations "
        "of public inter-region latency tables); clients in each region send tasks and the table "
        "shows where their tasks went. Latency-aware choice works when most tasks of each client "
        "land in its own region."
    ),
}


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, kernel, Python, torch, libp2p and trio versions, date.

    Versions come from package metadata: torch is not imported.
    """
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "libp2p": _version("libp2p"),
        "trio": _version("trio"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1m": load_average(),
    }


def load_average() -> float | None:
    """The 1-minute load average: other work on the machine skews every timing."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def aim_status(name: str, figures: dict[str, Any]) -> str | None:
    """'met' or 'missed' (with the aim) for scenarios that have an aim; None otherwise."""
    if name in ("churn", "frozen"):
        if "completed" not in figures:
            return None
        ok = (
            figures["failed"] == 0
            and figures["duplicates_accepted"] == 0
            and figures["receipts_verified"] == figures["completed"] == figures["tasks"]
        )
        aim = "every task completed with a verified receipt, none accepted twice"
        return f"{'met' if ok else 'missed'}: {aim}"
    statuses = []
    for key, op, bound, words in AIMS.get(name, []):
        if key not in figures or figures[key] is None:
            continue
        value = float(figures[key])
        ok = value <= bound if op == "<=" else value >= bound
        statuses.append(f"{'met' if ok else 'missed'} ({key} = {value:g}; aim: {words})")
    return "; ".join(statuses) or None


def write_all(out: Path, results: dict[str, Any], samples: dict[str, Any]) -> list[Path]:
    """Write every output file into ``out``; return their paths."""
    paths = [out / "results.json", out / "samples.json"]
    paths[0].write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(json.dumps(samples) + "\n", encoding="utf-8")
    paths += write_plots(out, results, samples)
    summary = out / "summary.md"
    summary.write_text(render_summary(results, [p.name for p in paths if p.suffix == ".png"]))
    paths.append(summary)
    return paths


def render_summary(results: dict[str, Any], plots: list[str]) -> str:
    """The Markdown summary of one run."""
    machine = results["machine"]
    run = results.get("run", {})
    lines = [
        "# mesh benchmark summary",
        "",
        f"Run {run.get('started', '?')} ({run.get('mode', '?')} mode, WAN emulation: "
        f"{run.get('wan', 'off')}), command: `{run.get('command', 'python -m benchmarks')}`.",
        "",
        "## Machine",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}; Python {machine['python']}, torch {machine['torch']} (CPU), "
        f"libp2p {machine['libp2p']}, trio {machine['trio']}; {machine['date']}. "
        f"Load average (1 min) at the start: {machine.get('load_average_1m')}; every "
        "figure below was taken while the machine did whatever else it was doing (a load "
        "above the core count means the mesh's processes waited for a CPU).",
        "",
        "## Reproduce",
        "",
        "```sh",
        "./scripts/setup.sh && source .venv/bin/activate",
        run.get("command", "python -m benchmarks"),
        "```",
        "",
    ]
    for name in run.get("scenarios", []):
        figures = results.get(name, {})
        lines += [f"## {name}", "", EXPLAIN.get(name, ""), ""]
        if "error" in figures:
            lines += [f"**Failed**: {figures['error']}", ""]
            continue
        wall = run.get("scenario_wall_s", {}).get(name)
        load = run.get("load_average_1m_after", {}).get(name)
        lines += [f"Ran {wall} s; load average (1 min) after it: {load}.", ""]
        status = aim_status(name, figures)
        if status:
            lines += [f"Aim: **{status}**", ""]
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [f"| `{k}` | {_cell(v)} |" for k, v in figures.items()]
        lines.append("")
        lines += [f"![{p}]({p})" for p in plots if p.startswith(name)]
        lines.append("")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        if any(isinstance(v, dict) for v in value.values()):
            # One level down is a group per key (a testnet size, a client region).
            return "; ".join(f"**{k}**: ({_cell(v)})" for k, v in value.items())
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def write_plots(out: Path, results: dict[str, Any], samples: dict[str, Any]) -> list[Path]:
    """PNG plots for the scenarios that ran; a scenario without its data gets none."""
    import matplotlib

    matplotlib.use("Agg")
    plotters: dict[str, Callable[[Path, dict[str, Any], dict[str, Any]], Path | None]] = {
        "overhead": _plot_overhead,
        "discovery": _plot_discovery,
        "churn": _plot_churn,
        "frozen": _plot_churn,
        "wan": _plot_wan,
        "verification": _plot_verification,
    }
    paths = []
    for name, plot in plotters.items():
        figures = results.get(name)
        if not figures or "error" in figures:
            continue
        path = plot(out / f"{name}.png", figures, samples.get(name, {}))
        if path is not None:
            paths.append(path)
    return paths


def _plot_overhead(path: Path, figures: dict[str, Any], samples: dict[str, Any]) -> Path | None:
    import matplotlib.pyplot as plt

    values = samples.get("overhead_ms")
    if not values:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=60, color="#4477aa")
    ax.axvline(figures["overhead_p50_ms"], color="k", linestyle="--", label="p50")
    ax.axvline(figures["overhead_p99_ms"], color="r", linestyle=":", label="p99")
    ax.set_xlabel("request latency - receipt compute time (ms)")
    ax.set_ylabel("tasks")
    ax.set_title("Per-task overhead, warm connection, tiny-mlp")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _plot_discovery(path: Path, figures: dict[str, Any], samples: dict[str, Any]) -> Path | None:
    import matplotlib.pyplot as plt

    per_size = figures.get("per_size", {})
    if not per_size:
        return None
    sizes = sorted(int(s) for s in per_size)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(sizes, [per_size[str(s)]["discovery_p50_ms"] for s in sizes], "o-", label="p50")
    ax.plot(sizes, [per_size[str(s)]["discovery_p90_ms"] for s in sizes], "s--", label="p90")
    ax.set_xlabel("node processes")
    ax.set_ylabel("discovery time (ms)")
    ax.set_title("Who serves tiny-mlp -> live chosen peer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _plot_churn(path: Path, figures: dict[str, Any], samples: dict[str, Any]) -> Path | None:
    import matplotlib.pyplot as plt

    done = samples.get("completed_at_s")
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(sorted(done), range(1, len(done) + 1), label="completed tasks")
    for i, t in enumerate(samples.get("faults_at_s", [])):
        ax.axvline(
            t,
            color="r",
            alpha=0.5,
            label="node " + figures.get("fault", "fault") if i == 0 else None,
        )
    ax.set_xlabel("seconds since the tasks were started")
    ax.set_ylabel("tasks completed")
    ax.set_title(
        f"{path.stem}: {figures.get('nodes', '?')} nodes, {figures.get('faulted', '?')} faulted"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _plot_verification(path: Path, figures: dict[str, Any], samples: dict[str, Any]) -> Path | None:
    import matplotlib.pyplot as plt

    curves, rate = samples.get("curves"), samples.get("rate")
    if not curves or rate is None:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    n = range(1, len(next(iter(curves.values()))) + 1)
    ax.plot(n, [1 - (1 - rate) ** k for k in n], "k--", label=f"1 - (1 - p)^n, p = {rate}")
    for faking, curve in curves.items():
        ax.plot(n, curve, label=f"client audit code, faking f = {faking}")
    ax.axvline(60, color="grey", linewidth=0.8)
    ax.axhline(0.95, color="grey", linewidth=0.8)
    ax.set_xlabel("faked results n")
    ax.set_ylabel("P(caught within n faked results)")
    ax.set_title("audit detection (simulation over the client's audit code)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_wan(path: Path, figures: dict[str, Any], samples: dict[str, Any]) -> Path | None:
    import matplotlib.pyplot as plt

    picks: dict[str, dict[str, int]] = figures.get("picks", {})
    if not picks:
        return None
    clients = sorted(picks)
    regions = sorted({r for row in picks.values() for r in row})
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    bottoms = [0.0] * len(clients)
    for region in regions:
        shares = []
        for c in clients:
            total = sum(picks[c].values()) or 1
            shares.append(picks[c].get(region, 0) / total)
        ax.bar(clients, shares, bottom=bottoms, label=region)
        bottoms = [b + s for b, s in zip(bottoms, shares, strict=True)]
    ax.set_ylabel("share of the client's tasks")
    ax.set_xlabel("client region")
    ax.set_title(f"Where tasks went (WAN emulation: {figures.get('mode', '?')})")
    ax.legend(title="worker region", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def rerender(out: Path) -> list[Path]:
    """Write summary.md and the plots again from ``out``'s results.json and samples.json."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    samples = json.loads((out / "samples.json").read_text(encoding="utf-8"))
    return write_all(out, results, samples)


if __name__ == "__main__":
    # python -m benchmarks.report DIR: re-render a finished run (after editing this module).
    import sys

    for folder in sys.argv[1:]:
        print("\n".join(str(p) for p in rerender(Path(folder))))
