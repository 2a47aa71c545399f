"""Faults on a real 4-node testnet while a client process is running tasks.

The client (its own process) warms up on every node, prints the workers it
used, and waits for a line on stdin. The test then SIGKILLs (or SIGSTOPs) the
node that served it most, says "go", and the client runs a batch of tasks,
each under its own deadline: every task must come back with a verified
receipt, none of them from the dead or frozen node. The last test stops the
testnet with SIGTERM: exit code 0 and every node process gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from meshproc import ENV, ROW, LineReader, NodeInfo, TestnetProcess, pid_gone, running_testnet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASKS_AFTER_FAULT = 12
TASK_DEADLINE_S = 15.0

CLIENT_SCRIPT = """
import json, sys
import trio
from mesh.client.async_client import AsyncClient, ClientConfig
from mesh.client.jsonvalues import tensor_from_nested
from mesh.client.retry import RetryPolicy
from mesh.core.receipts import verify_receipt

bootstrap, row = sys.argv[1], json.loads(sys.argv[2])
count, deadline = int(sys.argv[3]), float(sys.argv[4])
# A frozen peer costs one attempt of at most 2 s before the task moves on.
config = ClientConfig(retry=RetryPolicy(attempt_timeout_s=2.0))

def inputs(k):
    return {"x": tensor_from_nested([[v + 0.01 * k for v in row]])}

async def main():
    async with AsyncClient.connect(bootstrap=bootstrap, config=config) as client:
        warm = await client.map(
            "tiny-mlp", [inputs(k) for k in range(12)], concurrency=4, timeout=deadline
        )
        print(json.dumps({"warm": [r.worker for r in warm]}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        started = trio.current_time()
        results = await client.map(
            "tiny-mlp", [inputs(100 + k) for k in range(count)], concurrency=4, timeout=deadline
        )
        elapsed = trio.current_time() - started
        for r in results:
            r.verify()  # a batch item: its proof against the batch receipt
        print(json.dumps({
            "workers": [r.worker for r in results],
            "attempts": [r.attempts for r in results],
            "elapsed_s": elapsed,
        }), flush=True)

trio.run(main)
"""


@pytest.fixture(scope="module")
def testnet4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestnetProcess]:
    with running_testnet(tmp_path_factory.mktemp("faults-testnet"), nodes=4) as net:
        yield net


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll a fast local condition (a /proc state) under a deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def process_state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return "?"


def run_client_around_fault(
    testnet: TestnetProcess, fault: Callable[[NodeInfo], None]
) -> tuple[NodeInfo, dict[str, Any]]:
    """Start the client, apply ``fault`` to the busiest live worker, return it and the results."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, str(testnet.bootstrap), json.dumps(ROW),
         str(TASKS_AFTER_FAULT), str(TASK_DEADLINE_S)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert proc.stdin is not None
    out = LineReader(proc.stdout, "client-stdout")
    err = LineReader(proc.stderr, "client-stderr")
    try:
        warm = json.loads(out.wait_for(lambda line: line.startswith("{"), timeout=60))["warm"]
        live = [n for n in testnet.nodes if not pid_gone(n.pid) and process_state(n.pid) != "T"]
        counts = Counter(w for w in warm if w in {n.peer_id for n in live})
        assert counts, f"the warm-up used no live node: {warm}"
        victim = testnet.node_by_peer(counts.most_common(1)[0][0])
        fault(victim)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = out.wait_for(lambda line: line.startswith("{"), timeout=TASK_DEADLINE_S + 60)
        assert proc.wait(timeout=30) == 0
        return victim, json.loads(line)
    except AssertionError as exc:
        stderr = "\n".join(err.all[-40:])
        raise AssertionError(f"{exc}\nclient stderr:\n{stderr}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def kill_node(node: NodeInfo) -> None:
    os.kill(node.pid, signal.SIGKILL)
    wait_until(lambda: pid_gone(node.pid), timeout=10, what=f"node {node.index} to die")


def test_client_completes_every_task_after_a_node_is_killed(testnet4: TestnetProcess) -> None:
    victim, result = run_client_around_fault(testnet4, kill_node)
    workers = result["workers"]
    assert len(workers) == TASKS_AFTER_FAULT
    assert victim.peer_id not in workers
    assert set(workers) <= {n.peer_id for n in testnet4.nodes}
    print(f"killed {victim.peer_id[:16]}: attempts {result['attempts']}")


def test_client_finishes_within_its_deadline_when_a_node_is_frozen(
    testnet4: TestnetProcess,
) -> None:
    frozen: list[NodeInfo] = []

    def freeze(node: NodeInfo) -> None:
        os.kill(node.pid, signal.SIGSTOP)
        frozen.append(node)
        wait_until(lambda: process_state(node.pid) == "T", timeout=10, what="the freeze")

    try:
        victim, result = run_client_around_fault(testnet4, freeze)
        # Every task of the batch came back verified (the script checks each
        # receipt and map() raises on any failure), none from the frozen node.
        workers = result["workers"]
        assert len(workers) == TASKS_AFTER_FAULT
        assert victim.peer_id not in workers
        print(
            f"froze {victim.peer_id[:16]}: attempts {result['attempts']}, "
            f"batch took {result['elapsed_s']:.1f} s"
        )
    finally:
        for node in frozen:
            os.kill(node.pid, signal.SIGCONT)


def test_sigterm_stops_the_testnet_and_every_node_exits(testnet4: TestnetProcess) -> None:
    # Runs last in this module: a killed node and a thawed one are among them.
    code = testnet4.stop(signal.SIGTERM)
    assert code == 0, testnet4.log.read_text()[-3000:]
    lines = testnet4.out.rest(timeout=10)
    assert lines[-1] == "stopped"
    assert any(line.startswith("signal 15") for line in lines)
    left = [n.pid for n in testnet4.nodes if not pid_gone(n.pid)]
    assert left == []
