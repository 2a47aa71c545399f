"""Streaming over real processes: a worker killed mid-stream, the stream goes on elsewhere.

A one-node testnet is the bootstrap; two ``mesh node`` processes serve
``tiny-gated`` (tiny-gpt whose decoding waits for a gate file after two tokens,
:mod:`gated_zoo`), with one thread each, so both are one runtime class. The
blocking ``mesh.Client`` in this process streams a generation; after the first
chunk (the gate still closed, so the worker is mid-task) the test SIGKILLs the
worker that sent it and opens the gate. The stream must continue on the other
worker (same signed task, same seed) and give every token exactly once: the
chunks add up to the verified result, the tokens before the kill included.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gated_zoo import NAME as GATED
from gated_zoo import make_gated_zoo
from meshproc import (
    NodeProcess,
    TestnetProcess,
    mesh_cli,
    pid_gone,
    running_testnet,
    start_node_process,
)

import mesh
from mesh.core.partials import token_list
from mesh.core.receipts import verify_receipt
from mesh.core.tensors import Tensor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIND_TIMEOUT_S = 90.0


@dataclass
class GatedMesh:
    bootstrap: Path
    zoo: Path
    gate: Path
    nodes: list[NodeProcess]


@pytest.fixture(scope="module")
def gated_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedMesh]:
    work = tmp_path_factory.mktemp("stream-mesh")
    gate = work / "gate"
    make_gated_zoo(work / "zoo", gate=gate, after=2)
    net: TestnetProcess
    with running_testnet(work / "testnet", nodes=1) as net:
        nodes: list[NodeProcess] = []
        try:
            for index in range(2):
                key = work / f"gated{index}.key"
                made = mesh_cli("keygen", "--out", str(key))
                assert made.returncode == 0, made.stderr
                command = [
                    sys.executable, "-m", "mesh", "node", "--key", str(key),
                    "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", str(net.bootstrap),
                    "--zoo", str(work / "zoo"), "--models", GATED, "--device", "cpu",
                    "--threads", "1",
                ]  # fmt: skip
                nodes.append(start_node_process(command))
            yield GatedMesh(net.bootstrap, work / "zoo", gate, nodes)
        finally:
            gate.touch()
            for node in nodes:
                node.kill()


def _wait_for_providers(client: mesh.Client, count: int) -> None:
    """Both gated nodes are findable in the DHT (a wait for a state, with a deadline)."""
    deadline = time.monotonic() + FIND_TIMEOUT_S
    assert client._client is not None
    while True:
        found = client._call(client._client.providers, GATED, timeout=5.0)
        if len(found) >= count:
            return
        assert time.monotonic() < deadline, f"only {found} serve {GATED}"
        time.sleep(0.2)  # the DHT's provider records arrive on their own schedule


def test_a_worker_killed_mid_stream_is_continued_by_another_without_loss_or_duplicates(
    gated_mesh: GatedMesh,
) -> None:
    config = mesh.ClientConfig(zoo_dirs=(gated_mesh.zoo,), timeout_s=90.0)
    with mesh.Client(bootstrap=gated_mesh.bootstrap, config=config) as client:
        _wait_for_providers(client, 2)
        assert not gated_mesh.gate.exists()
        with client.stream(
            GATED, {"prompt": ["Hello mesh"]}, seed=5, max_tokens=24, temperature_milli=800
        ) as stream:
            first = next(stream)
            assert first.token_ids  # the worker's first tokens, sent before its third
            (victim,) = [n for n in gated_mesh.nodes if n.peer_id == first.worker]
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(timeout=30)
            assert pid_gone(victim.proc.pid) or victim.proc.returncode is not None
            gated_mesh.gate.touch()  # the survivor may run to the end now
            rest = list(stream)
            result = stream.result
        (survivor,) = [n for n in gated_mesh.nodes if n is not victim]
        chunks = [first, *rest]
        ids = [i for c in chunks for i in c.token_ids]
        final = result.outputs["token_ids"]
        assert isinstance(final, Tensor)
        # Every token once, in order: the killed worker's first ones and the rest.
        assert ids == token_list(final) and len(ids) == 24
        assert "".join(c.text for c in chunks) == result.outputs["text"][0]
        assert result.worker == survivor.peer_id and result.attempts == 2
        # The victim's tokens (those it sent before it died), then the survivor's.
        workers = [c.worker for c in chunks if c.token_ids]
        given_by_victim = workers.count(victim.peer_id)
        assert given_by_victim >= 1 and survivor.peer_id in workers
        assert workers == [victim.peer_id] * given_by_victim + [survivor.peer_id] * (
            len(workers) - given_by_victim
        )
        verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
        assert result.task.digest == stream.task_id  # the same signed task, re-sent
        assert result.task.message.params["seed"] == 5
