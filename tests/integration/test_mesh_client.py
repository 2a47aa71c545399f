"""Clients in their own processes against a real ``mesh testnet``: SDK, CLI run and peers.

Every result must come with a receipt that ``mesh verify`` (another process
again) accepts; a tampered output file must be refused, so the check is real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from meshproc import REPO, ROW, TestnetProcess, mesh_cli, run_json_script, verify_receipt_files

from mesh.client.async_client import load_bootstrap
from mesh.core.tensors import Tensor
from mesh.core.values import decode_values, encode_values

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The SDK as a user would call it, in a fresh process: blocking Client, one run
# and one map; each result's three files go where `mesh verify` reads them.
SDK_SCRIPT = """
import json, sys
from pathlib import Path
import mesh
from mesh.cli.client import write_receipt_files
from mesh.client.jsonvalues import tensor_from_nested

bootstrap, out_dir, row = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
rows = [[v + 0.1 * k for v in row] for k in range(6)]
with mesh.Client(bootstrap=bootstrap) as client:
    results = [client.run("tiny-mlp", {"x": tensor_from_nested([row])}, timeout=30)]
    results += client.map("tiny-mlp", [{"x": tensor_from_nested([r])} for r in rows], timeout=30)
doc = {"workers": [], "task_ids": [], "receipts": [], "attempts": []}
for i, result in enumerate(results):
    path = out_dir / f"receipt-{i}.bin"
    write_receipt_files(result, path)
    doc["workers"].append(result.worker)
    doc["task_ids"].append(result.receipt.message.task_id.hex())
    doc["receipts"].append(str(path))
    doc["attempts"].append(result.attempts)
print(json.dumps(doc))
"""


def test_sdk_client_process_gets_receipts_that_mesh_verify_accepts(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    doc = run_json_script(SDK_SCRIPT, str(shared_testnet.bootstrap), str(tmp_path), json.dumps(ROW))
    node_ids = {n.peer_id for n in shared_testnet.nodes}
    workers = doc["workers"]
    assert isinstance(workers, list) and len(workers) == 7
    assert set(workers) <= node_ids
    assert len(set(doc["task_ids"])) == 7
    receipts = doc["receipts"]
    assert isinstance(receipts, list)
    for receipt in receipts:
        verified = verify_receipt_files(Path(receipt))
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("OK receipt")


def test_mesh_run_json_writes_a_receipt_that_mesh_verify_accepts(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    receipt = tmp_path / "run.receipt"
    done = mesh_cli(
        "run", "tiny-mlp", "--bootstrap", str(shared_testnet.bootstrap),
        "--input", json.dumps({"x": [ROW, ROW]}), "--json", "--receipt-out", str(receipt),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["worker"] in {n.peer_id for n in shared_testnet.nodes}
    assert doc["receipt"]["worker"] == doc["worker"]
    logits = doc["outputs"]["logits"]
    assert logits["shape"] == [2, 10] and logits["data"][0] == logits["data"][1]

    verified = verify_receipt_files(receipt)
    assert verified.returncode == 0, verified.stderr
    assert doc["receipt"]["task_id"][:8] in verified.stdout

    # The same receipt over other outputs must be refused: the check bites.
    outputs = decode_values(Path(f"{receipt}.output").read_bytes())
    tensor = outputs["logits"]
    assert isinstance(tensor, Tensor)
    flipped = Tensor(tensor.dtype, tensor.shape, bytes([tensor.data[0] ^ 1]) + tensor.data[1:])
    Path(f"{receipt}.output").write_bytes(encode_values({"logits": flipped}))
    refused = verify_receipt_files(receipt)
    assert refused.returncode != 0
    assert "OK" not in refused.stdout


def test_mesh_run_text_prints_generated_text_and_receipt(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    receipt = tmp_path / "gpt.receipt"
    args = ["--param", "max_tokens=6", "--param", "seed=3", "--receipt-out", str(receipt)]
    done = mesh_cli(
        "run", "tiny-gpt", "--bootstrap", str(shared_testnet.bootstrap),
        "--text", "The mesh", *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("text: ") for line in lines), done.stdout
    assert lines[-1].startswith("receipt: verified seq=")
    assert verify_receipt_files(receipt).returncode == 0


def test_mesh_peers_lists_every_testnet_node(shared_testnet: TestnetProcess) -> None:
    done = mesh_cli("peers", "--bootstrap", str(shared_testnet.bootstrap), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    by_id = {row["peer_id"]: row for row in rows}
    for node in shared_testnet.nodes:
        row = by_id[node.peer_id]
        assert sorted(row["models"]) == ["tiny-gpt", "tiny-mlp"]
        assert row["device"] == "cpu" and row["queue_capacity"] > 0

    table = mesh_cli("peers", "--bootstrap", str(shared_testnet.bootstrap))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["PEER", "MODELS", "DEVICE"]
    assert len(table.stdout.splitlines()) >= 1 + len(shared_testnet.nodes)


def test_bootstrap_files_parse(shared_testnet: TestnetProcess) -> None:
    # The shipped list has only comments (no public mesh yet): it parses to nothing.
    assert load_bootstrap(REPO / "bootstrap-nodes.txt") == []
    # The testnet's list names its first nodes, with their PeerIDs.
    addrs = load_bootstrap(shared_testnet.bootstrap)
    assert addrs == [n.addr for n in shared_testnet.nodes[: len(addrs)]]
    assert len(addrs) == 3
