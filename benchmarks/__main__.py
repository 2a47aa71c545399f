"""``python -m benchmarks``: start local testnets, run the scenarios, write figures.

Usage (from the repository root, with the virtual environment active)::

    python -m benchmarks [SCENARIO ...] [--quick] [--out DIR] [--wan[=netns|app]]

Scenarios: overhead, efficiency, discovery, cold_start, churn, frozen,
verification (all by default) and wan (added by ``--wan``). Each scenario part runs in a fresh
process that starts its own testnet (a process that has run trio must not fork
a testnet). ``--out DIR`` (default ``bench-out/<UTC timestamp>``) receives
``results.json`` (scenario -> named figures, plus ``machine``), ``samples.json``
(raw series behind the plots), ``summary.md``, PNG plots and ``logs/``.
``--quick`` uses small counts (CI smoke runs, under 3 minutes). Scenario
processes get ``OMP_NUM_THREADS=1`` unless the caller sets it (see
:data:`DEFAULT_OMP_THREADS` for why).

``--wan`` (or ``--wan=netns``) puts nodes in network namespaces joined by veth
pairs with netem delays per region pair; it needs root, ``ip netns`` and the
kernel's ``sch_netem``, and stops with the reason when any is missing.
``--wan=app`` is the labelled fallback: the client delays each request by the
round-trip time between its region and the peer's (application layer).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks import report
from benchmarks.scenarios import DEFAULT_SCENARIOS, SCENARIOS, load
from benchmarks.scenarios.common import PROGRESS_PREFIX

WAN_MODES = ("netns", "app")

# Torch threads per node process. The launcher sets torch.set_num_threads(1)
# before forking, but OpenMP keeps that per thread: in a forked node, a torch
# call from a worker thread (where the executor runs every forward pass) then
# builds a 2-thread team each time and a 64x32 linear takes ~5.5 ms instead of
# ~0.013 ms (measured here with py-spy and a fork test). OMP_NUM_THREADS fixes
# it for every thread; the value is recorded in results.json. Since 648a153 the
# executor applies the thread count in its worker thread itself (checked with
# OMP_NUM_THREADS=2: overhead p50 2.07 ms), so this default is belt and braces.
DEFAULT_OMP_THREADS = "1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run mesh testnet benchmarks and write results.json, summary.md and plots.",
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--quick", action="store_true", help="small counts (< 3 min in all)")
    parser.add_argument("--out", type=Path, help="output folder (default bench-out/<timestamp>)")
    parser.add_argument(
        "--wan",
        nargs="?",
        const="netns",
        choices=WAN_MODES,
        help="emulated WAN: netns (namespaces + netem, needs root) or app (client-side delay)",
    )
    parser.add_argument(
        "--resummarize",
        type=Path,
        metavar="DIR",
        help="recompute figures, summary and plots of a finished run from DIR/logs",
    )
    args = parser.parse_args(argv)
    for name in args.scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    if not args.scenarios:
        args.scenarios = list(DEFAULT_SCENARIOS) + (["wan"] if args.wan else [])
    if "wan" in args.scenarios and not args.wan:
        # The scenario named without a mode: take the mode that runs anywhere.
        args.wan = "app"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resummarize is not None:
        return resummarize(args.resummarize)
    if args.wan == "netns" and "wan" in args.scenarios:
        from mesh.testnet.wan import check_support

        problem = check_support()
        if problem is not None:
            print(f"--wan=netns cannot run here: {problem}", file=sys.stderr)
            print("(--wan=app runs the labelled application-layer fallback)", file=sys.stderr)
            return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or Path("bench-out") / stamp
    (out / "logs").mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": report.machine_info()}
    results["run"] = {
        "mode": "quick" if args.quick else "full",
        "wan": args.wan or "off",
        "scenarios": args.scenarios,
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": stamp,
        "omp_num_threads": omp_threads(),
        "scenario_wall_s": {},
        "load_average_1m_after": {},
    }
    samples: dict[str, Any] = {}
    failed = []
    plans = {
        name: load(name).plan(quick=args.quick, wan=args.wan or "off") for name in args.scenarios
    }
    total = sum(len(p) for p in plans.values())
    with tqdm(total=total, desc="scenarios", unit="part", position=0, file=sys.stderr) as outer:
        for name, parts_params in plans.items():
            started = time.monotonic()
            parts = []
            errors = []
            for index, params in enumerate(parts_params):
                try:
                    parts.append(_run_part(name, index, params, out))
                except PartFailed as exc:
                    errors.append(str(exc))  # the other parts still count
                outer.update(1)
            if errors:
                failed.append(name)
            figures = summarize(name, parts, errors)
            samples[name] = figures.pop("samples", {})
            results[name] = figures
            results["run"]["scenario_wall_s"][name] = round(time.monotonic() - started, 1)
            # Load from other processes skews timings: keep it beside each scenario.
            results["run"]["load_average_1m_after"][name] = report.load_average()
            _write(out, results, samples)  # after each scenario: a crash keeps what ran
    paths = report.write_all(out, results, samples)
    print(f"results in {out}: {', '.join(p.name for p in paths)}", file=sys.stderr)
    if failed:
        print(f"failed scenarios: {', '.join(failed)} (see {out / 'logs'})", file=sys.stderr)
        return 1
    return 0


def summarize(name: str, parts: list[dict[str, Any]], errors: list[str]) -> dict[str, Any]:
    """A scenario's figures from the parts that ran; failed parts are listed, not hidden."""
    if not parts:
        return {"error": "; ".join(errors)}
    figures = load(name).summarize(parts)
    if errors:
        figures["failed_parts"] = errors
    return figures


def resummarize(out: Path) -> int:
    """Figures again from ``out/logs/<scenario>-<i>.json`` (after editing a summarize)."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    samples: dict[str, Any] = {}
    for name in results["run"]["scenarios"]:
        paths = sorted((out / "logs").glob(f"{name}-*.json"))
        parts = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
        previous = results.get(name, {})
        errors = list(previous.get("failed_parts", []))
        if "error" in previous:
            errors.append(previous["error"])
        figures = summarize(name, parts, errors)
        samples[name] = figures.pop("samples", {})
        results[name] = figures
    report.write_all(out, results, samples)
    print(f"re-summarized {out}", file=sys.stderr)
    return 0


class PartFailed(Exception):
    """A scenario part's process failed; the message names its log."""


def _run_part(name: str, index: int, params: dict[str, Any], out: Path) -> dict[str, Any]:
    result_path = out / "logs" / f"{name}-{index}.json"
    log_path = out / "logs" / f"{name}-{index}.log"
    command = [sys.executable, "-m", "benchmarks.scenarios", name]
    command += ["--params", json.dumps(params), "--result", str(result_path)]
    env = {**os.environ, "OMP_NUM_THREADS": omp_threads()}
    label = f"{name}" + (f" {index + 1}" if index else "")
    with (
        open(log_path, "w", encoding="utf-8") as log,
        tqdm(desc=label, position=1, leave=False, file=sys.stderr) as bar,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(PROGRESS_PREFIX):
                state = json.loads(line[len(PROGRESS_PREFIX) :])
                bar.set_description(f"{label}: {state['label']}")
                bar.total = state["total"]
                bar.n = state["done"]
                bar.refresh()
            else:
                log.write(line)
        code = proc.wait()
    if code != 0 or not result_path.exists():
        raise PartFailed(f"{name} part {index} exited with code {code}; see {log_path}")
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    return result


def omp_threads() -> str:
    """OMP_NUM_THREADS for the scenario processes: the caller's, or one thread."""
    return os.environ.get("OMP_NUM_THREADS", DEFAULT_OMP_THREADS)


def _write(out: Path, results: dict[str, Any], samples: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "samples.json").write_text(json.dumps(samples) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
