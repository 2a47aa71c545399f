"""Node and client services over real libp2p on 127.0.0.1 (the real runtime, tiny-mlp).

One in-process smoke test (two libp2p hosts in one trio run) and one with real
processes: ``mesh node`` started, its ready line awaited, ``mesh run`` against
it, then SIGINT: the node drains and exits 0.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from mesh.client.async_client import AsyncClient
from mesh.core import canonical
from mesh.core.identity import Identity
from mesh.core.messages import ErrorReply, decode_response, encode_request
from mesh.core.receipts import verify_receipt
from mesh.errors import PeerUnavailable
from mesh.files.keyfile import write_key_file
from mesh.net.interface import TASK_PROTOCOL, PeerAddr
from mesh.node.config import NodeConfig
from mesh.node.runtime_runner import load_runtime_runner
from mesh.node.service import Node, libp2p_network_factory, run_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]

X = [[0.01 * i for i in range(32)]]


async def test_client_runs_tiny_mlp_on_a_libp2p_node(tmp_path: Path) -> None:
    from mesh.client.jsonvalues import tensor_from_nested

    config = NodeConfig(
        identity=Identity.from_seed(b"\x11" * 32),
        data_dir=tmp_path,
        model_names=("tiny-mlp",),
        listen=("/ip4/127.0.0.1/tcp/0",),
        device="cpu",
        threads=1,
    )
    stop = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(
                functools.partial(
                    run_node,
                    config,
                    network_factory=libp2p_network_factory,
                    runner_factory=load_runtime_runner,
                    stop=stop,
                )
            )
            addrs = node.listen_addrs()
            async with AsyncClient.connect(bootstrap=addrs) as client:
                x = {"x": tensor_from_nested(X)}
                result = await client.run("tiny-mlp", x, timeout=20)
                again = await client.run("tiny-mlp", x, timeout=20)
                views = await client.peers(timeout=5)
                # Hostile messages straight to /mesh/task/1.0.0 over libp2p.
                target = PeerAddr(node.peer_id, tuple(addrs))
                task = client.build_task(result.task.message.model_root, x)
                good = encode_request(task, x)
                forged = canonical.decode(good)
                forged["task"]["sig"] = bytes(64)
                codes = []
                for payload in (canonical.encode(forged), good, good):
                    net = client._network
                    reply = await net.request(target, TASK_PROTOCOL, payload, timeout=10)
                    decoded = decode_response(reply)
                    codes.append(decoded.code if isinstance(decoded, ErrorReply) else "ok")
                assert codes == ["bad-signature", "ok", "replayed"]
                with pytest.raises(PeerUnavailable):
                    await client._network.request(target, TASK_PROTOCOL, b"\xc1", timeout=10)
                after = await client.run("tiny-mlp", x, timeout=20)
                assert after.worker == node.peer_id
            verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
            assert result.worker == node.peer_id
            assert again.receipt.message.seq == result.receipt.message.seq + 1
            assert again.outputs == result.outputs  # same inputs, deterministic runtime
            assert [v.peer_id for v in views] == [node.peer_id]
            assert views[0].record.model_names == ("tiny-mlp",)
            stop.set()


def test_mesh_node_process_serves_mesh_run_and_drains_on_sigint(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    write_key_file(key, Identity.from_seed(b"\x12" * 32))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    node = subprocess.Popen(
        [sys.executable, "-m", "mesh", "node", "--key", str(key), "--listen",
         "/ip4/127.0.0.1/tcp/0", "--models", "tiny-mlp", "--device", "cpu", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        ready = node.stdout.readline()  # blocks until the ready line (or EOF on failure)
        assert ready.startswith("node "), ready + (node.stderr.read() if node.stderr else "")
        words = ready.split()
        assert words[2] == "listening" and words[-2] == "serving" and words[-1] == "tiny-mlp"
        boot = tmp_path / "boot.txt"
        boot.write_text(words[3] + "\n")
        receipt = tmp_path / "r.bin"
        run = subprocess.run(
            [sys.executable, "-m", "mesh", "run", "tiny-mlp", "--bootstrap", str(boot),
             "--input", json.dumps({"x": X}), "--json", "--receipt-out", str(receipt)],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        assert doc["worker"] == words[1] and doc["outputs"]["logits"]["shape"] == [1, 10]
        verify = subprocess.run(
            [sys.executable, "-m", "mesh", "verify", str(receipt), "--task", f"{receipt}.task",
             "--output", f"{receipt}.output"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert verify.returncode == 0 and verify.stdout.startswith("OK"), verify.stderr
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=30) == 0
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
