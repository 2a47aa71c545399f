"""The examples run as a user would run them, against a real testnet.

``examples/sdk_quickstart.py BOOTSTRAP DIR`` must finish with verified results
and leave a receipt ``mesh verify`` accepts; ``examples/operator_join.sh
BOOTSTRAP WORK`` must make a key and a starter node.toml, start a node (the
environment overriding the file) that joins the testnet and serves a task, and
exit 0 on SIGTERM. ``examples/`` must not be an importable
package (libp2p installs a top-level ``examples`` package of its own).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from meshproc import (
    ENV,
    EXAMPLES,
    ROW,
    TestnetProcess,
    mesh_cli,
    start_node_process,
    verify_receipt_files,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_examples_is_not_a_package() -> None:
    assert not (EXAMPLES / "__init__.py").exists()


def test_sdk_quickstart_runs_and_its_receipt_verifies(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "sdk_quickstart.py"), str(shared_testnet.bootstrap),
         str(tmp_path)],
        capture_output=True, text=True, timeout=90, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    listed = {line.split()[1] for line in lines if line.startswith("peer ")}
    assert {n.peer_id for n in shared_testnet.nodes} <= listed
    assert any(line.startswith("receipt verified: seq=") for line in lines)
    assert any(line.startswith("map: 4 results") for line in lines)
    assert any(line.startswith("stream: ") and "result verified" in line for line in lines)
    worker = next(line for line in lines if line.startswith("classes ")).split(" from ")[1]
    assert worker.split()[0] in listed

    verified = verify_receipt_files(tmp_path / "receipt.bin")
    assert verified.returncode == 0, verified.stderr


def test_operator_join_script_starts_a_node_that_serves(
    shared_testnet: TestnetProcess, tmp_path: Path
) -> None:
    work = tmp_path / "operator"
    env = {
        **ENV,
        # The `mesh` command of this interpreter's environment, as after `source .venv/...`.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV.get('PATH', '')}",
        # Overrides of the node.toml the script writes (environment over file).
        "MESH_NODE_LISTEN": "/ip4/127.0.0.1/tcp/0",
        "MESH_NODE_DEVICE": "cpu",
        "MESH_NODE_THREADS": "1",
        "MESH_NODE_REGION": "example-region",
    }
    script = ["bash", str(EXAMPLES / "operator_join.sh"), str(shared_testnet.bootstrap), str(work)]
    node = start_node_process(script, env=env)
    try:
        assert node.out.seen[0] == f"operator peer id: {node.peer_id}"
        assert (work / "node.key").stat().st_mode & 0o077 == 0  # a private key file
        assert 'models = "tiny-mlp"' in (work / "node.toml").read_text()  # the starter file
        assert node.addrs[0].startswith("/ip4/127.0.0.1/tcp/")  # MESH_NODE_LISTEN won

        run = mesh_cli(
            "run", "tiny-mlp", "--bootstrap", str(shared_testnet.bootstrap),
            "--input", json.dumps({"x": [ROW]}), "--target", node.peer_id, "--json",
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["worker"] == node.peer_id

        # exec: the signal reaches the node itself, which drains and exits 0.
        assert node.stop(signal.SIGTERM) == 0
    finally:
        node.kill()

    # Run again with the same folder: the key is kept, so is the identity.
    again = mesh_cli("peer-id", str(work / "node.key"))
    assert again.stdout.strip() == node.peer_id
