"""Helpers for the attack tests (``tests/integration/test_mesh_attacks.py``).

A testnet here is the testnet launcher run in a subprocess by a small script
(:data:`LAUNCH`), so a test can set node options the ``mesh testnet`` command
does not offer (a second listen address on ``::1``, a small replay cache). The
script prints one JSON line with the nodes (pid, PeerID, addresses) once the
testnet is findable, logs the nodes' INFO lines to stderr (a file) tagged with
their pid, and stops the testnet on SIGTERM.

Attackers are ``python -m benchmarks.scenarios.attackers KIND`` processes (the
same the ``attacks`` benchmark runs); a test waits for their ``@@engaged``
line. Every wait has a deadline; nothing sleeps to let things settle.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from meshproc import ENV, REPO, LineReader

from mesh.core.tensors import Tensor
from mesh.core.values import Values

LAUNCH = r"""
import json, logging, signal, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                    format="%(process)d %(levelname)s %(name)s: %(message)s")
logging.getLogger("mesh").setLevel(logging.INFO)
from mesh.testnet.launcher import Testnet, TestnetConfig
spec = json.loads(sys.argv[1])
node = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("node", {}).items()}
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
net = Testnet(TestnetConfig(nodes=spec["nodes"], model_names=tuple(spec["models"]),
                            ready_timeout_s=120.0, node=node))
net.start()
try:
    print(json.dumps({"bootstrap": net.bootstrap_addrs, "nodes": [
        {"pid": n.pid, "peer_id": n.peer_id, "addrs": n.addrs} for n in net.nodes]}), flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
finally:
    net.stop()
"""


@dataclass
class Node:
    pid: int
    peer_id: str
    addrs: list[str]

    def addr(self, family: str = "ip4") -> str:
        return next(a for a in self.addrs if f"/{family}/" in a)


@dataclass
class Net:
    proc: subprocess.Popen[str]
    log: Path
    bootstrap: list[str]
    nodes: list[Node]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def launched(
    work: Path, *, nodes: int = 1, models: tuple[str, ...] = ("tiny-mlp",), **node: Any
) -> Iterator[Net]:
    """A testnet for the duration of the block (see the module docstring)."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "nodes.log"
    spec = {"nodes": nodes, "models": list(models), "node": node}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, json.dumps(spec)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=ENV, cwd=work,
            start_new_session=True,
        )  # fmt: skip
    try:
        out = LineReader(proc.stdout, "launch-stdout")
        try:
            line = out.wait_for(lambda text: text.startswith("{"), timeout=180)
        except AssertionError as exc:
            raise AssertionError(
                f"testnet did not start: {exc}\n{log.read_text()[-3000:]}"
            ) from None
        doc = json.loads(line)
        yield Net(proc, log, doc["bootstrap"], [Node(**n) for n in doc["nodes"]])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Attacker:
    """An attacker process; ``engaged()`` waits until its attack is in place."""

    def __init__(self, kind: str, **params: Any) -> None:
        env = {**ENV, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.scenarios.attackers", kind,
             "--params", json.dumps(params)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        self.out = LineReader(self.proc.stdout, f"attacker-{kind}")
        self.err = LineReader(self.proc.stderr, f"attacker-{kind}-err")

    def wait_for(self, prefix: str, *, timeout: float = 120.0) -> dict[str, Any]:
        try:
            line = self.out.wait_for(lambda text: text.startswith(prefix), timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nattacker stderr: {self.err.all[-20:]}") from None
        payload: dict[str, Any] = json.loads(line[len(prefix) :])
        return payload

    def engaged(self, *, timeout: float = 120.0) -> dict[str, Any]:
        return self.wait_for("@@engaged ", timeout=timeout)

    def stop(self) -> dict[str, Any]:
        """SIGTERM; its final counters."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            counters = self.wait_for("@@done ", timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        return counters

    def __enter__(self) -> Attacker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def rss_mib(pid: int) -> float:
    """A process's resident set size (VmRSS) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def until(
    predicate: Callable[[], Awaitable[bool]],
    *,
    timeout: float,  # noqa: ASYNC109 (a polling helper: its deadline is its contract)
    every: float,
) -> None:
    """Poll ``predicate`` (a process's RSS, a log file, the DHT: states with no event to
    wait on) every ``every`` seconds until it holds; fail after ``timeout``."""
    with trio.fail_after(timeout):
        while True:
            if await predicate():
                return
            await trio.sleep(every)


def mlp_input(index: int) -> Values:
    """A tiny-mlp input (1 x 32 float32) that differs per ``index``."""
    import struct

    values = [((index * 31 + j * 7) % 23) / 11.0 - 1.0 for j in range(32)]
    return {"x": Tensor("float32", (1, 32), struct.pack("<32f", *values))}
