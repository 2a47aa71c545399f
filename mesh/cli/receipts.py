"""``mesh receipts``: a worker's receipt log checked, counted and priced.

``mesh receipts [LOG] [--data-dir DIR | --key KEY] [--since WHEN] [--until WHEN]
[--zoo DIR] [--json | --csv]`` reads a receipt log (``DATA_DIR/receipts.log``; the
data dir defaults to ``KEY.data`` as for ``mesh node``), checks the whole chain
first -- a tampered or foreign log is refused (exit 1, the broken record named) --
and prints, for receipts *finished* in ``[--since, --until)``: tasks, compute
(receipt ``finished_ms - started_ms``) and earnings due (each receipt's
``price_micro``, the price in force when it was issued; see
:mod:`mesh.node.pricing`), by model and by client, and in all. ``WHEN`` is an ISO
date or time (``2026-11-30``, ``2026-11-30T12:00``, ``...Z`` or ``+02:00``;
without a zone: UTC) or epoch milliseconds. Models are named by the zoo when it
knows their root, else by hex. ``--csv`` writes one row per (model, client).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from mesh.errors import ConfigError, MeshError
from mesh.node.ledger import Ledger, Total, Totals, read_ledger, totals

RECEIPT_LOG = "receipts.log"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "receipts",
        help="check a receipt log and total tasks, compute and earnings",
        description="Check a worker's receipt log (refusing a tampered one) and total its "
        "receipts by model and by client over a time range, with earnings at each "
        "receipt's price.",
    )
    parser.add_argument("log", nargs="?", type=Path, metavar="LOG", help="a receipts.log file")
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="the node's data dir (reads receipts.log)"
    )
    parser.add_argument(
        "--key", type=Path, metavar="PATH", help="the node's key file (data dir KEY.data)"
    )
    parser.add_argument("--since", metavar="WHEN", help="count receipts finished from then")
    parser.add_argument("--until", metavar="WHEN", help="count receipts finished before then")
    parser.add_argument(
        "--zoo", action="append", type=Path, default=[], metavar="DIR",
        help="extra zoo folder, to name models by their roots",
    )  # fmt: skip
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object")
    output.add_argument("--csv", action="store_true", help="print CSV, a row per model and client")
    parser.set_defaults(func=receipts_command)


def log_path(args: argparse.Namespace) -> Path:
    """The receipt log the arguments name. Raises ConfigError when they name none."""
    if args.log is not None:
        return Path(args.log)
    if args.data_dir is not None:
        return Path(args.data_dir) / RECEIPT_LOG
    if args.key is not None:
        key = Path(args.key)
        return key.parent / f"{key.name}.data" / RECEIPT_LOG
    raise ConfigError("name a receipt log: LOG, --data-dir DIR or --key KEY")


def parse_when(text: str | None, *, option: str) -> int | None:
    """Epoch milliseconds of an ISO date/time (UTC unless it says) or of an integer."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{option} takes an ISO date or time (2026-11-30, 2026-11-30T12:00Z) "
            f"or epoch milliseconds, not {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def model_namer(zoo_dirs: list[Path]) -> Callable[[bytes], str]:
    """model_root -> zoo name (hex for roots the zoo does not know)."""
    from mesh.runtime.zoo import manifests

    names: dict[bytes, str] = {}
    try:
        for name, manifest in manifests(zoo_dirs).items():
            if manifest.model_root is not None:
                names.setdefault(manifest.model_root, name)
    except MeshError:
        pass  # a broken zoo folder only costs the names
    return lambda root: names.get(root, root.hex()[:16])


def receipts_command(args: argparse.Namespace) -> int:
    since = parse_when(args.since, option="--since")
    until = parse_when(args.until, option="--until")
    ledger = read_ledger(log_path(args))
    if ledger.torn_bytes:
        print(
            f"mesh: warning: {ledger.path} ends in a torn record ({ledger.torn_bytes} bytes, "
            "a write cut by a crash): not counted",
            file=sys.stderr,
        )
    result = totals(
        ledger.receipts, since_ms=since, until_ms=until, model_name=model_namer(args.zoo)
    )
    if args.json:
        print(json.dumps(to_json(ledger, result), sort_keys=True))
    elif args.csv:
        write_csv(result, sys.stdout)
    else:
        print_table(ledger, result, sys.stdout)
    return 0


def to_json(ledger: Ledger, result: Totals) -> dict[str, Any]:
    return {
        "log": str(ledger.path),
        "worker": ledger.worker,
        "chain": "verified",
        "receipts_in_log": len(ledger.receipts),
        "torn_bytes": ledger.torn_bytes,
        "since_ms": result.since_ms,
        "until_ms": result.until_ms,
        "total": result.all.to_json(),
        "by_model": {k: v.to_json() for k, v in sorted(result.by_model.items())},
        "by_client": {k: v.to_json() for k, v in sorted(result.by_client.items())},
        "by_model_client": [
            {"model": m, "client": c, **t.to_json()} for (m, c), t in sorted(result.by_pair.items())
        ],
    }


CSV_FIELDS = ("model", "client", "tasks", "compute_ms", "earned_micro", "first_ms", "last_ms")


def write_csv(result: Totals, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for (model, client), total in sorted(result.by_pair.items()):
        row = total.to_json()
        writer.writerow([model, client, *(row[f] for f in CSV_FIELDS[2:])])


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _row(label: str, total: Total) -> tuple[str, ...]:
    return (
        label,
        str(total.tasks),
        f"{total.compute_ms / 1000:.3f}",
        f"{total.earned_micro / 1e6:.6f}",
        f"{total.earned_micro}",
    )


def print_table(ledger: Ledger, result: Totals, out: TextIO) -> None:
    print(
        f"receipt log {ledger.path}: worker {ledger.worker or '-'}, "
        f"{len(ledger.receipts)} receipts, chain verified",
        file=out,
    )
    print(f"finished from {_when(result.since_ms)} until {_when(result.until_ms)}", file=out)
    header = ("", "TASKS", "COMPUTE S", "EARNED", "MICRO")
    for title, groups in (("MODEL", result.by_model), ("CLIENT", result.by_client)):
        rows: list[tuple[str, ...]] = [(title, *header[1:])]
        rows += [_row(name, total) for name, total in sorted(groups.items())]
        rows.append(_row("total", result.all))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        print(file=out)
        for row in rows:
            cells = [
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            print("  ".join(cells), file=out)
