"""Batched map on a real testnet: many items under one signed task, each item provable alone.

A client process maps tiny-mlp over 20 inputs in batches of 8 (three signed
tasks, three receipts); ``mesh verify --proof`` in other processes checks single
items against their batch's receipt, and refuses an item whose outputs were
changed or that is presented under another item's proof.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from meshproc import ROW, TestnetProcess, mesh_cli, run_json_script

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH_SCRIPT = """
import json, sys
from pathlib import Path
import mesh
from mesh.cli.client import write_receipt_files
from mesh.client.jsonvalues import tensor_from_nested

bootstrap, out_dir, row = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
rows = [[v + 0.01 * k for v in row] for k in range(20)]
with mesh.Client(bootstrap=bootstrap) as client:
    results = client.map(
        "tiny-mlp", [{"x": tensor_from_nested([r])} for r in rows], batch_size=8, timeout=60
    )
doc = {"receipts": [], "tasks": [], "counts": [], "workers": []}
for i, result in enumerate(results):
    result.verify()
    path = out_dir / f"item-{i}.bin"
    write_receipt_files(result, path)
    doc["receipts"].append(str(path))
    doc["tasks"].append(result.task.digest.hex())
    doc["counts"].append(result.proof.count)
    doc["workers"].append(result.worker)
print(json.dumps(doc))
"""


def _verify(path: str, *, proof: str | None = None, output: str | None = None) -> int:
    done = mesh_cli(
        "verify", path, "--task", f"{path}.task", "--output", output or f"{path}.output",
        "--proof", proof or f"{path}.proof", "--input", f"{path}.input",
    )  # fmt: skip
    return done.returncode


def test_batched_map_items_verify_alone_against_their_batch_receipt(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    doc = run_json_script(
        BATCH_SCRIPT, str(shared_testnet.bootstrap), str(tmp_path), json.dumps(ROW)
    )
    assert len(doc["receipts"]) == 20
    assert len(set(doc["tasks"])) == 3  # 8 + 8 + 4 items: three signed tasks
    assert doc["counts"] == [8] * 16 + [4] * 4
    assert set(doc["workers"]) <= {n.peer_id for n in shared_testnet.nodes}
    receipts = doc["receipts"]
    for index in (0, 7, 8, 19):
        done = mesh_cli(
            "verify", receipts[index], "--task", f"{receipts[index]}.task",
            "--output", f"{receipts[index]}.output", "--proof", f"{receipts[index]}.proof",
            "--input", f"{receipts[index]}.input",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"item={index % 8}/" in done.stdout
    # Item 1's outputs under item 0's proof (same batch, same receipt): refused.
    assert _verify(receipts[0], output=f"{receipts[1]}.output") == 1
    # Item 0's outputs under item 1's proof: refused.
    assert _verify(receipts[0], proof=f"{receipts[1]}.proof") == 1
    # Without the proof, a batch's receipt does not pass for a single task's.
    plain = mesh_cli(
        "verify", receipts[0], "--task", f"{receipts[0]}.task", "--output", f"{receipts[0]}.output"
    )
    assert plain.returncode == 1 and "FAIL" in plain.stderr
