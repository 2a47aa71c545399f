"""``mesh verify``: check a receipt or a verdict offline; ``mesh model-root``: a model's identity.

``mesh verify VERDICT [--no-recompute] [--require-recompute] [--zoo DIR]`` takes a
verdict file (written by a client in its data directory, ``verdicts/*.verdict``)
and checks it, recomputing where the model is available: see
:mod:`mesh.cli.verdict_check` for what each line it prints means.

File formats read by ``mesh verify RECEIPT [--task TASK] [--output OUTPUT]``:

- RECEIPT: the receipt's signed envelope, exactly as signed: the canonical
  MessagePack bytes of ``{"body", "key", "sig", "type": "mesh/receipt/v1"}``
  (``Signed.envelope``).
- TASK: the task's signed envelope bytes in the same form (type ``mesh/task/v1``);
  its SHA-256 is the task id the receipt must name.
- OUTPUT: the outputs' values wire map in canonical MessagePack
  (:func:`mesh.core.values.encode_values`); its SHA-256 is the receipt's output hash.

Exit 0 and ``OK receipt seq=.. worker=<peer id> task=<hex8> model=<hex8>
output=<hex8>`` on stdout, or exit 1 and ``FAIL <reason>`` on stderr.

``mesh model-root FILE... | DIR`` prints the hex model root of the tensors in the
safetensors files (a folder stands for the ``*.safetensors`` files in it).

``mesh inspect FILE`` opens a signed envelope of any kind (task, receipt,
capacity, verdict), checks its signature and prints its fields as JSON (bytes
as hex), with the signer's PeerID and the envelope digest. Given a receipt log
(a node's ``receipts.log``) it checks the chain and prints every record
(``mesh receipts`` totals them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mesh.core import canonical
from mesh.core.envelope import M, Signed, open_signed
from mesh.core.evidence import is_verdict_file
from mesh.core.identity import peer_id_from_public_key
from mesh.core.messages import CapacityRecord, Receipt, Task, Verdict
from mesh.core.model_root import format_root
from mesh.core.receipt_chain import MAX_RECORD_BYTES, RECORD_LENGTH, check_chain, open_records
from mesh.core.receipts import verify_receipt
from mesh.core.values import decode_values
from mesh.errors import (
    BadSignature,
    MalformedMessage,
    MeshError,
    OutputMismatch,
    TaskMismatch,
    TooLarge,
)
from mesh.runtime.model_files import model_root_of_files


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    verify = subparsers.add_parser("verify", help="check a receipt or a verdict file offline")
    verify.add_argument(
        "receipt", metavar="RECEIPT|VERDICT", help="receipt envelope bytes, or a verdict file"
    )
    verify.add_argument("--task", metavar="TASK", help="task envelope bytes it must answer")
    verify.add_argument("--output", metavar="OUTPUT", help="canonical outputs it must cover")
    verify.add_argument(
        "--no-recompute", action="store_true", help="verdicts: do not load the model"
    )
    verify.add_argument(
        "--require-recompute",
        action="store_true",
        help="verdicts: fail when the model is not available to recompute",
    )
    verify.add_argument("--zoo", action="append", type=Path, default=[], metavar="DIR")
    verify.set_defaults(func=_verify)
    root = subparsers.add_parser("model-root", help="print the model root of safetensors files")
    root.add_argument("paths", nargs="+", metavar="FILE", help=".safetensors files or a folder")
    root.set_defaults(func=_model_root)
    inspect = subparsers.add_parser("inspect", help="check and print a signed envelope file")
    inspect.add_argument(
        "file", metavar="FILE", help="envelope bytes of any signed kind, or a receipt log"
    )
    inspect.set_defaults(func=_inspect)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _Fail(f"cannot read {path}: {exc.strerror}") from exc


class _Fail(Exception):
    """A reason to print as ``FAIL <reason>``."""


def _verify(args: argparse.Namespace) -> int:
    try:
        data = _read(args.receipt)
    except _Fail as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    if is_verdict_file(data):
        return _verify_verdict(data, args)
    try:
        line = _check(args)
    except _Fail as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print(line)
    return 0


def _verify_verdict(data: bytes, args: argparse.Namespace) -> int:
    from mesh.cli.verdict_check import VerdictFailure, check_verdict_file

    if args.task is not None or args.output is not None:
        print(
            "FAIL --task and --output are for receipts; a verdict file holds both", file=sys.stderr
        )
        return 1
    try:
        report = check_verdict_file(data, zoo_dirs=tuple(args.zoo), recompute=not args.no_recompute)
    except VerdictFailure as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines))
    if args.require_recompute and not report.recomputed:
        print("FAIL the verdict was not recomputed (--require-recompute)", file=sys.stderr)
        return 1
    return 0


def _check(args: argparse.Namespace) -> str:
    receipt = _open(args.receipt, Receipt, "receipt")
    task = None if args.task is None else _open(args.task, Task, "task")
    outputs = None
    if args.output is not None:
        try:
            outputs = decode_values(_read(args.output))
        except (MalformedMessage, TooLarge) as exc:
            raise _Fail(f"malformed output: {exc}") from exc
    try:
        verify_receipt(receipt, task=task, outputs=outputs)
    except TaskMismatch as exc:
        raise _Fail(f"task mismatch: {exc}") from exc
    except OutputMismatch as exc:
        raise _Fail(f"output hash mismatch: {exc}") from exc
    except MeshError as exc:
        raise _Fail(f"malformed receipt: {exc}") from exc
    r = receipt.message
    return (
        f"OK receipt seq={r.seq} worker={peer_id_from_public_key(r.worker)}"
        f" task={r.task_id.hex()[:8]} model={r.model_root.hex()[:8]}"
        f" output={r.output_hash.hex()[:8]}"
    )


def _open(path: str, kind: type[M], what: str) -> Signed[M]:
    """Open a signed envelope file, failing with the reason ``mesh verify`` prints."""
    try:
        return open_signed(_read(path), kind)
    except BadSignature as exc:
        raise _Fail(f"bad signature on the {what}: {exc}") from exc
    except (MalformedMessage, TooLarge) as exc:
        raise _Fail(f"malformed {what}: {exc}") from exc


def _model_root(args: argparse.Namespace) -> int:
    print(format_root(model_root_of_files(args.paths)))
    return 0


_KINDS = {cls.TYPE: cls for cls in (Task, Receipt, CapacityRecord, Verdict)}


def _inspect(args: argparse.Namespace) -> int:
    try:
        data = _read(args.file)
        if looks_like_receipt_log(data):
            return _inspect_log(data, args.file)
        wire = canonical.decode(data)
        kind = _KINDS.get(str(wire.get("type"))) if isinstance(wire, dict) else None
        if kind is None:
            raise _Fail("not a signed envelope of a known type")
        signed = open_signed(data, kind)
    except (_Fail, MeshError) as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    wire_fields = signed.message.to_wire()
    fields = {k: v.hex() if isinstance(v, bytes) else v for k, v in wire_fields.items()}
    summary = {
        "type": signed.type,
        "signer": peer_id_from_public_key(signed.key),
        "digest": signed.digest.hex(),
        "fields": fields,
    }
    print(json.dumps(summary, indent=2, sort_keys=True, default=_hex))
    return 0


def looks_like_receipt_log(data: bytes) -> bool:
    """True when ``data`` starts with a receipt-log record (a 4-byte length, then a
    receipt envelope), which no single envelope does (those start with a map)."""
    if len(data) < RECORD_LENGTH.size:
        return False
    (length,) = RECORD_LENGTH.unpack_from(data)
    if not 0 < length <= MAX_RECORD_BYTES or len(data) < RECORD_LENGTH.size + length:
        return False
    try:
        open_signed(data[RECORD_LENGTH.size : RECORD_LENGTH.size + length], Receipt)
    except MeshError:
        return False
    return True


def _inspect_log(data: bytes, path: str) -> int:
    """A receipt log: check its chain and print every record (``mesh receipts`` totals it)."""
    try:
        chain = check_chain(data, source=path)
    except MeshError as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    records = [
        {
            "seq": signed.message.seq,
            "digest": signed.digest.hex(),
            "fields": {
                k: _hex(v) if isinstance(v, bytes) else v
                for k, v in signed.message.to_wire().items()
            },
        }
        for signed in open_records(data[: chain.good_bytes], source=path)
    ]
    summary = {
        "type": "receipt log",
        "worker": peer_id_from_public_key(chain.worker) if chain.worker else "",
        "chain": "verified",
        "records": len(records),
        "torn_bytes": len(data) - chain.good_bytes,
        "totals": f"mesh receipts {path}",
        "receipts": records,
    }
    print(json.dumps(summary, indent=2, sort_keys=True, default=_hex))
    return 0


def _hex(value: object) -> object:
    # Lists of bytes (a capacity record's models) are not JSON; show them as hex.
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot show {type(value).__name__}")
