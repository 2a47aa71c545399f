"""``mesh run`` and ``mesh peers``: the client side of the mesh from a shell.

``mesh run MODEL --bootstrap FILE (--input JSON | --text TEXT...) [--json]
[--receipt-out PATH] [--verify MODE] [--audit-rate P] [--replicas K]
[--local-check] [--data-dir DIR]`` runs one task and prints its outputs (small
tensors as nested lists, texts as lines) or, with ``--json``, one JSON object
with the outputs, worker, latency, receipt summary and what verification did.
``--receipt-out PATH`` writes the files ``mesh verify`` reads: PATH (receipt
envelope bytes), PATH.task (task envelope bytes) and PATH.output (canonical
values encoding).

``--verify`` is ``signature`` (the default: trusts the worker), ``audit`` or
``redundant`` (see mesh.client.verification). The client keeps its audit secret,
its reputation table and the verdicts it makes in ``--data-dir`` (default
``~/.mesh/client``; nothing is written until there is something to keep), so a
worker caught once stays excluded across runs.

``mesh peers --bootstrap FILE [--json]`` lists live peers with valid capacity
records: peer id, models, device, queue, throughput, latency, region.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import trio

from mesh.aio.groups import unwrap_single_error
from mesh.client.async_client import AsyncClient, ClientConfig, PeerView, RunResult
from mesh.client.audit import DEFAULT_AUDIT_RATE
from mesh.client.jsonvalues import tensor_to_nested, values_from_json, values_to_json
from mesh.client.models import text_input_name
from mesh.client.results import Verification
from mesh.client.verification import DEFAULT_REPLICAS
from mesh.core.identity import peer_id_from_public_key
from mesh.core.tensors import Tensor
from mesh.core.values import Values, encode_values
from mesh.errors import ConfigError, MeshError

# Tensors up to this many elements print in full; bigger ones as a summary.
MAX_PRINTED_ELEMENTS = 256
DEFAULT_DATA_DIR = Path("~/.mesh/client")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    run = subparsers.add_parser("run", help="run one task on the mesh and verify its receipt")
    run.add_argument("model", metavar="MODEL", help="zoo name or hex model_root")
    _common(run)
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="JSON", help="inputs as JSON (or @FILE)")
    source.add_argument("--text", nargs="+", metavar="TEXT", help="texts for a text model")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="integer parameter (seed, max_tokens, temperature_milli, top_k, top_p_milli)",
    )
    run.add_argument("--target", metavar="PEER_ID", help="run only on this peer")
    run.add_argument("--receipt-out", type=Path, metavar="PATH", help="write receipt files")
    run.add_argument("--zoo", action="append", type=Path, default=[], metavar="DIR")
    run.add_argument(
        "--verify",
        default="signature",
        metavar="MODE",
        help="signature (trusts the worker), audit (re-check a random share on an independent "
        "worker) or redundant (independent workers must agree)",
    )
    run.add_argument(
        "--audit-rate", type=float, default=None, metavar="P", help="audit: share re-checked"
    )
    run.add_argument(
        "--replicas", type=int, default=None, metavar="K", help="redundant: workers per task"
    )
    run.add_argument(
        "--local-check", action="store_true", help="settle checks here (loads the model)"
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"audit secret, reputation and verdicts (default {DEFAULT_DATA_DIR})",
    )
    run.set_defaults(func=run_command)

    peers = subparsers.add_parser("peers", help="list live peers and their capacity")
    _common(peers)
    peers.set_defaults(func=peers_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", required=True, metavar="FILE", help="bootstrap file")
    parser.add_argument("--key", type=Path, help="key file (default: a throwaway key)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")


def parse_params(items: list[str]) -> dict[str, int]:
    """``NAME=INT`` items to a params dict. Raises ConfigError."""
    params: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            params[name] = int(value)
        except ValueError:
            raise ConfigError(f"--param takes NAME=INT, not {item!r}") from None
        if not sep or not name:
            raise ConfigError(f"--param takes NAME=INT, not {item!r}")
    return params


def build_inputs(args: argparse.Namespace) -> Values:
    """The task inputs from ``--input`` (JSON or @FILE) or ``--text``. Raises ConfigError."""
    if args.text is not None:
        return {text_input_name(args.model, zoo_dirs=args.zoo): list(args.text)}
    text = args.input
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {text[1:]}: {exc}") from exc
    try:
        return values_from_json(json.loads(text))
    except (json.JSONDecodeError, MeshError) as exc:
        raise ConfigError(f"--input: {exc}") from exc


def run_command(args: argparse.Namespace) -> int:
    inputs = build_inputs(args)
    params = parse_params(args.param)
    # ClientConfig checks the mode, rate and replicas: a bad one is refused before
    # the client even starts, so nothing is sent.
    config = ClientConfig(
        timeout_s=args.timeout,
        zoo_dirs=tuple(args.zoo),
        verify=args.verify,
        audit_rate=DEFAULT_AUDIT_RATE if args.audit_rate is None else args.audit_rate,
        replicas=DEFAULT_REPLICAS if args.replicas is None else args.replicas,
        local_check=args.local_check,
        data_dir=args.data_dir if args.data_dir is not None else DEFAULT_DATA_DIR,
    )

    async def main() -> RunResult:
        async with AsyncClient.connect(
            bootstrap=args.bootstrap, key=args.key, config=config
        ) as client:
            return await client.run(
                args.model, inputs, timeout=args.timeout, target=args.target, params=params
            )

    with unwrap_single_error():
        result = trio.run(main)
    if args.receipt_out is not None:
        write_receipt_files(result, args.receipt_out)
    print_result(result, as_json=args.json, out=sys.stdout)
    return 0


def write_receipt_files(result: RunResult, path: Path) -> None:
    """Write PATH, PATH.task and PATH.output in the formats ``mesh verify`` reads."""
    try:
        path.write_bytes(result.receipt.envelope)
        Path(f"{path}.task").write_bytes(result.task.envelope)
        Path(f"{path}.output").write_bytes(encode_values(result.outputs))
    except OSError as exc:
        raise ConfigError(f"cannot write receipt files at {path}: {exc}") from exc


def receipt_summary(result: RunResult) -> dict[str, Any]:
    receipt = result.receipt.message
    return {
        "seq": receipt.seq,
        "worker": peer_id_from_public_key(receipt.worker),
        "task_id": receipt.task_id.hex(),
        "model_root": receipt.model_root.hex(),
        "output_hash": receipt.output_hash.hex(),
        "runtime": receipt.runtime,
        "started_ms": receipt.started_ms,
        "finished_ms": receipt.finished_ms,
    }


def print_result(result: RunResult, *, as_json: bool, out: TextIO) -> None:
    if as_json:
        doc = {
            "outputs": values_to_json(result.outputs),
            "worker": result.worker,
            "latency_ms": round(result.latency_ms, 3),
            "attempts": result.attempts,
            "receipt": receipt_summary(result),
            "verification": verification_summary(result),
        }
        print(json.dumps(doc), file=out)
        return
    for name, value in result.outputs.items():
        if isinstance(value, Tensor):
            if value.numel <= MAX_PRINTED_ELEMENTS:
                print(f"{name}: {json.dumps(tensor_to_nested(value))}", file=out)
            else:
                shape = "x".join(map(str, value.shape))
                print(f"{name}: tensor {value.dtype} [{shape}] ({value.numel} values)", file=out)
        else:
            for text in value:
                print(f"{name}: {text}", file=out)
    report = result.verification
    if report is not None:
        print(f"verification: {describe_verification(report)}", file=out)
    receipt = result.receipt.message
    # The receipt line stays last: scripts read it as the run's final word.
    print(
        f"receipt: verified seq={receipt.seq} worker={result.worker} "
        f"task={receipt.task_id.hex()[:8]} latency={result.latency_ms:.1f} ms "
        f"attempts={result.attempts}",
        file=out,
    )


def verification_summary(result: RunResult) -> dict[str, Any] | None:
    """What verification did, as JSON (None for a bare receipt check)."""
    report = result.verification
    if report is None:
        return None
    return {
        "mode": report.mode,
        "checked": report.checked,
        "confirmed_by": list(report.confirmed_by),
        "extra_runs": report.extra_runs,
        "checks": report.checks,
        "verdicts": list(report.verdicts),
        "note": report.note,
    }


def describe_verification(report: Verification) -> str:
    """One line: the mode and what it proved for this result."""
    if report.mode == "signature":
        return "signature only (the worker is trusted with the answer)"
    parts = [report.mode]
    if report.checked:
        who = ", ".join(_short(p) for p in report.confirmed_by) or "nobody"
        parts.append(f"confirmed by {who}")
    else:
        parts.append(report.note or "not drawn for an audit this time")
    parts.append(f"{report.extra_runs} extra run(s), {report.checks} check(s)")
    if report.verdicts:
        parts.append(f"{len(report.verdicts)} verdict(s) made against wrong answers")
    return "; ".join(parts)


def peers_command(args: argparse.Namespace) -> int:

    async def main() -> list[PeerView]:
        async with AsyncClient.connect(bootstrap=args.bootstrap, key=args.key) as client:
            return await client.peers(timeout=args.timeout)

    with unwrap_single_error():
        views = trio.run(main)
    print_peers(views, as_json=args.json, out=sys.stdout)
    return 0


def print_peers(views: list[PeerView], *, as_json: bool, out: TextIO) -> None:
    rows: list[dict[str, Any]] = [
        {
            "peer_id": v.peer_id,
            "models": list(v.record.model_names),
            "device": v.record.device,
            "queue_depth": v.record.queue_depth,
            "queue_capacity": v.record.queue_capacity,
            "throughput": v.record.throughput_milli / 1000,
            "latency_ms": None if v.latency_ms is None else round(v.latency_ms, 2),
            "region": v.record.region,
        }
        for v in views
    ]
    if as_json:
        print(json.dumps(rows), file=out)
        return
    header = ("PEER", "MODELS", "DEVICE", "QUEUE", "TASKS/S", "LATENCY MS", "REGION")
    table: list[tuple[str, ...]] = [header] + [
        (
            _short(r["peer_id"]),
            ",".join(r["models"]),
            r["device"],
            f"{r['queue_depth']}/{r['queue_capacity']}",
            f"{r['throughput']:.1f}",
            "-" if r["latency_ms"] is None else f"{r['latency_ms']:.1f}",
            r["region"] or "-",
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        cells = (str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip(), file=out)
    if not rows:
        print("(no live peers found)", file=out)


def _short(peer_id: str) -> str:
    return f"{peer_id[:8]}..{peer_id[-6:]}" if len(peer_id) > 16 else peer_id
