"""``mesh receipts`` and ``mesh inspect`` on receipt logs: totals, ranges, tampering."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from mesh.cli import main
from mesh.core.identity import Identity
from mesh.node.pricing import receipt_claims
from mesh.node.receipt_log import ReceiptLog
from mesh.runtime.zoo import find_manifest

pytestmark = pytest.mark.unit

WORKER = Identity.from_seed(b"\x07" * 32)
ALICE = Identity.from_seed(b"\x0a" * 32)
BOB = Identity.from_seed(b"\x0b" * 32)
T0 = 1_780_000_000_000  # epoch ms
MLP = find_manifest("tiny-mlp").model_root
GPT = find_manifest("tiny-gpt").model_root


def make_log(path: Path) -> list[tuple[bytes, Identity, int, int, int]]:
    """(model, client, finished_ms, compute_ms, price) per receipt, as issued."""
    issued = [
        (MLP, ALICE, T0 + 1_000, 4, 100),
        (MLP, BOB, T0 + 2_000, 6, 100),
        (GPT, ALICE, T0 + 3_000, 40, 250),  # the price changed between restarts
        (MLP, ALICE, T0 + 86_400_000, 5, 250),  # a day later
    ]
    with ReceiptLog.open(path, WORKER) as log:
        for n, (root, client, finished, compute, price) in enumerate(issued):
            log.issue(
                task_id=n.to_bytes(32, "big"),
                client=client.public_key,
                model_root=root,
                runtime={"device": "cpu", **receipt_claims(price)},
                output_hash=bytes(32),
                started_ms=finished - compute,
                finished_ms=finished,
            )
    return issued


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_totals_by_model_and_client_with_prices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "receipts.log"
    make_log(log)
    code, out, _ = run(capsys, "receipts", str(log), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["worker"] == WORKER.peer_id and doc["chain"] == "verified"
    assert doc["total"] == {
        "tasks": 4, "compute_ms": 55, "earned_micro": 700, "first_ms": T0 + 1_000,
        "last_ms": T0 + 86_400_000,
    }  # fmt: skip
    assert doc["by_model"]["tiny-mlp"]["tasks"] == 3 and doc["by_model"]["tiny-gpt"]["tasks"] == 1
    assert doc["by_client"][ALICE.peer_id]["earned_micro"] == 600
    assert doc["by_client"][BOB.peer_id]["earned_micro"] == 100


def test_a_time_range_counts_receipts_finished_inside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "receipts.log"
    make_log(log)
    code, out, _ = run(
        capsys,
        "receipts",
        str(log),
        "--json",
        "--since",
        str(T0 + 2_000),
        "--until",
        str(T0 + 3_001),
    )
    assert code == 0 and json.loads(out)["total"]["tasks"] == 2
    code, out, _ = run(capsys, "receipts", str(log), "--csv", "--since", "2026-05-29T20:26:40Z")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [(r["model"], r["tasks"]) for r in rows] == [("tiny-mlp", "1")]
    code, _, err = run(capsys, "receipts", str(log), "--since", "yesterday")
    assert code == 1 and "--since takes an ISO date" in err


def test_the_table_names_models_and_totals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "node.key.data"
    data.mkdir()
    make_log(data / "receipts.log")
    (tmp_path / "node.key").write_bytes(b"")  # only its name matters here
    code, out, _ = run(capsys, "receipts", "--key", str(tmp_path / "node.key"))
    assert code == 0
    assert "4 receipts, chain verified" in out
    assert any(line.split()[:2] == ["total", "4"] for line in out.splitlines())


def test_a_tampered_log_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "receipts.log"
    make_log(log)
    raw = bytearray(log.read_bytes())
    raw[-40] ^= 0x01  # inside the last record
    log.write_bytes(bytes(raw))
    code, out, err = run(capsys, "receipts", str(log))
    assert code == 1 and out == ""
    assert "record 3" in err
    code, _, err = run(capsys, "inspect", str(log))
    assert code == 1 and "record 3" in err


def test_inspect_prints_a_receipt_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "receipts.log"
    make_log(log)
    code, out, _ = run(capsys, "inspect", str(log))
    doc = json.loads(out)
    assert code == 0 and doc["type"] == "receipt log" and doc["records"] == 4
    assert doc["receipts"][1]["fields"]["client"] == BOB.public_key.hex()
    assert doc["receipts"][2]["fields"]["runtime"]["price_micro"] == 250
