"""Helpers for the real-process mesh tests (``tests/integration/test_mesh_*.py``).

A testnet here is ``mesh testnet`` run as a subprocess, exactly as a researcher
would: we read its stdout line by line (a reader thread feeding a queue) until
the ``ready`` line arrives under a deadline, parse the node pids and addresses it
prints, and stop it with a signal. Clients run in other processes: the ``mesh``
CLI or a small Python script. Nothing sleeps to let things settle: every wait
is for a line of output or a process exit, each with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# Unbuffered children, so every line they print reaches us as it is printed.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# One tiny-mlp input row (the model takes [-1, 32] float32).
ROW = [round(0.03 * i - 0.4, 4) for i in range(32)]

_NODE_LINE = re.compile(r"^\s*node (\d+) pid (\d+) (\S+/p2p/(\S+))$")
_READY_SECONDS = re.compile(r" in ([0-9.]+) s;")


@dataclass(frozen=True)
class NodeInfo:
    """One node of a testnet, as ``mesh testnet`` printed it."""

    index: int
    pid: int
    addr: str
    peer_id: str


class LineReader:
    """Reads a text stream line by line in a thread, so waits can have deadlines."""

    def __init__(self, stream: object, name: str) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []  # lines consumed by wait_for/rest
        self.all: list[str] = []  # every line read so far (for diagnostics)
        self._thread = threading.Thread(target=self._pump, args=(stream,), name=name, daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.all.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of stream

    def wait_for(self, predicate: Callable[[str], bool], *, timeout: float) -> str:
        """The first new line for which ``predicate`` holds.

        Raises:
            AssertionError: the stream ended or ``timeout`` passed first (with what was seen).
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(
                    f"no expected line within {timeout:.0f} s; saw: {self.seen[-20:]}"
                ) from None
            if line is None:
                raise AssertionError(f"output ended before the expected line; saw: {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self, *, timeout: float) -> list[str]:
        """Every remaining line until the stream ends (the process exited)."""
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"output did not end within {timeout:.0f} s") from None
            if line is None:
                return out
            self.seen.append(line)
            out.append(line)


@dataclass
class TestnetProcess:
    """A running ``mesh testnet`` subprocess and what it printed."""

    __test__ = False  # not a test class, despite its name

    proc: subprocess.Popen[str]
    out: LineReader
    bootstrap: Path
    log: Path
    nodes: list[NodeInfo] = field(default_factory=list)
    ready_line: str = ""
    wall_ready_s: float = 0.0  # from our Popen to its ready line (imports included)

    @property
    def reported_ready_s(self) -> float:
        """The launcher's own start-to-ready time, from its ready line."""
        match = _READY_SECONDS.search(self.ready_line)
        assert match, self.ready_line
        return float(match.group(1))

    def node_by_peer(self, peer_id: str) -> NodeInfo:
        return next(n for n in self.nodes if n.peer_id == peer_id)

    def stop(
        self, signum: int = signal.SIGTERM, *, group: bool = False, timeout: float = 60.0
    ) -> int:
        """Send ``signum`` and wait for the exit code (the launcher drains every node).

        Args:
            signum: the signal.
            group: send it to the launcher's whole process group, as a terminal's
                Ctrl-C does (the launcher runs in a session of its own).
            timeout: how long the drain may take.
        """
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, signum)
            else:
                self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def kill_everything(self) -> None:
        """Last resort at teardown: nothing of ours may outlive the test session.

        Node pids are signalled only while they still run the testnet's code
        (forked children share its command line), never a reused pid.
        """
        ours = [n.pid for n in self.nodes if _is_testnet_process(n.pid)]
        for pid in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in ours:
            if _is_testnet_process(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _is_testnet_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"testnet" in cmdline and not pid_gone(pid)


def start_testnet(
    work: Path,
    *,
    nodes: int,
    models: str = "tiny-mlp",
    timeout: float = 120.0,
    extra: tuple[str, ...] = (),
) -> TestnetProcess:
    """Run ``mesh testnet --nodes N [EXTRA...]``; return once it printed ``ready`` and its nodes."""
    work.mkdir(parents=True, exist_ok=True)
    bootstrap = work / "bootstrap.txt"
    log = work / "testnet.stderr"
    started = time.monotonic()
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mesh", "testnet", "--nodes", str(nodes), "--models", models,
             "--bootstrap-out", str(bootstrap), "--work-dir", str(work / "nodes"),
             "--ready-timeout", str(timeout), *extra],
            stdout=subprocess.PIPE, stderr=err, text=True, env=ENV, cwd=work,
            start_new_session=True,  # its own process group, like a shell job
        )  # fmt: skip
    net = TestnetProcess(proc, LineReader(proc.stdout, "testnet-stdout"), bootstrap, log)
    try:
        net.ready_line = net.out.wait_for(lambda line: "ready" in line, timeout=timeout + 30)
        net.wall_ready_s = time.monotonic() - started
        for _ in range(nodes):
            line = net.out.wait_for(lambda line: _NODE_LINE.match(line) is not None, timeout=10)
            match = _NODE_LINE.match(line)
            assert match is not None
            index, pid, addr, peer_id = match.groups()
            net.nodes.append(NodeInfo(int(index), int(pid), addr, peer_id))
    except AssertionError as exc:
        net.kill_everything()
        raise AssertionError(f"testnet did not start: {exc}\n{log.read_text()[-3000:]}") from None
    except BaseException:
        net.kill_everything()
        raise
    return net


def pid_gone(pid: int) -> bool:
    """True when no process (not even a zombie) has ``pid``."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    # A zombie whose parent exited is reaped by init shortly; it runs no code.
    return "\nState:\tZ" in status


def mesh_cli(
    *args: str, timeout: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mesh ARGS`` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "mesh", *args],
        capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd,
    )  # fmt: skip


def run_json_script(code: str, *args: str, timeout: float = 90.0) -> dict[str, Any]:
    """Run a Python script in a new process; its last stdout line is a JSON object."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=timeout, env=ENV,
    )  # fmt: skip
    assert done.returncode == 0, f"script failed ({done.returncode}):\n{done.stderr[-4000:]}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"script printed nothing; stderr:\n{done.stderr[-2000:]}"
    doc = json.loads(lines[-1])
    assert isinstance(doc, dict)
    return doc


def verify_receipt_files(receipt: Path) -> subprocess.CompletedProcess[str]:
    """``mesh verify RECEIPT --task RECEIPT.task --output RECEIPT.output``."""
    return mesh_cli(
        "verify", str(receipt), "--task", f"{receipt}.task", "--output", f"{receipt}.output"
    )


@contextlib.contextmanager
def running_testnet(
    work: Path, *, nodes: int, models: str = "tiny-mlp", extra: tuple[str, ...] = ()
) -> Iterator[TestnetProcess]:
    """A testnet for the duration of the block; stopped with SIGTERM, killed if stuck."""
    net = start_testnet(work, nodes=nodes, models=models, extra=extra)
    try:
        yield net
    finally:
        try:
            net.stop(signal.SIGTERM)
        finally:
            net.kill_everything()


@dataclass
class NodeProcess:
    """A ``mesh node`` started by hand (the operator path) and its ready line."""

    proc: subprocess.Popen[str]
    out: LineReader
    err: LineReader
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)
    models: str = ""

    def stop(self, signum: int, *, timeout: float = 60.0) -> int:
        """Send ``signum`` (the node drains) and wait for its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_node_process(
    command: list[str], *, env: dict[str, str] | None = None, timeout: float = 90.0
) -> NodeProcess:
    """Run a command that ends up as ``mesh node``; return once it printed its ready line.

    The ready line is ``node <peer id> listening <addr>... serving <names>``.
    """
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV,
    )  # fmt: skip
    node = NodeProcess(
        proc, LineReader(proc.stdout, "node-out"), LineReader(proc.stderr, "node-err")
    )
    try:
        line = node.out.wait_for(lambda line: line.startswith("node "), timeout=timeout)
    except AssertionError as exc:
        node.kill()
        raise AssertionError(f"{exc}\nstderr: {node.err.all[-30:]}") from None
    words = line.split()
    assert words[2] == "listening" and words[-2] == "serving", line
    node.peer_id, node.addrs, node.models = words[1], words[3:-2], words[-1]
    return node
