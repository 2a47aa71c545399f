"""Forked child processes that report readiness over a pipe.

A testnet imports torch and libp2p once, then forks one process per node
before any trio run starts: children share the parent's imported modules (and
CPU-resident weights) copy-on-write, so ten nodes are ready in about a second
instead of paying ~2.7 s and ~300 MB of imports each (see the libp2p notes).

Each child gets the write end of a pipe and writes one JSON line when it is
ready; the parent reads those lines under a deadline. Nothing here knows what
a node is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mesh.errors import DeadlineExceeded, MeshError

logger = logging.getLogger(__name__)

# A child's main: gets a `report(dict)` callable for its ready line, returns an exit code.
ChildMain = Callable[[Callable[[dict[str, Any]], None]], int]


@dataclass
class Child:
    """A forked child and the read end of its report pipe."""

    name: str
    pid: int
    report_fd: int
    buffer: bytes = b""
    report: dict[str, Any] | None = None
    exit_code: int | None = field(default=None)

    @property
    def alive(self) -> bool:
        return self.exit_code is None and self.poll() is None

    def poll(self) -> int | None:
        """Reap the child if it has exited; return its exit code or None."""
        if self.exit_code is not None:
            return self.exit_code
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.exit_code = -1
            return self.exit_code
        if pid == 0:
            return None
        self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code

    def close_pipe(self) -> None:
        if self.report_fd >= 0:
            os.close(self.report_fd)
            self.report_fd = -1

    def signal(self, signum: int) -> None:
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)


def fork_child(name: str, main: ChildMain) -> Child:
    """Fork a child running ``main``; it must not return to the caller's code."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 1
        try:
            # Our own process group: a terminal's Ctrl-C reaches the launcher
            # only, which then stops the children in order (each drains once).
            os.setpgid(0, 0)
            _die_with_parent()
            # The parent's handlers and blocked signals are not ours.
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

            def report(payload: dict[str, Any]) -> None:
                os.write(write_fd, json.dumps(payload).encode() + b"\n")

            code = main(report)
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    return Child(name=name, pid=pid, report_fd=read_fd)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this child if the launcher dies, so no node outlives it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def wait_for_reports(children: Iterable[Child], *, timeout: float) -> None:
    """Block until every child wrote its ready line.

    Raises:
        DeadlineExceeded: some child did not report within ``timeout`` seconds.
        MeshError: a child exited (or closed its pipe) before reporting.
    """
    pending = {c.report_fd: c for c in children if c.report is None}
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            names = ", ".join(sorted(c.name for c in pending.values()))
            raise DeadlineExceeded(f"not ready after {timeout:.0f} s: {names}")
        readable, _, _ = select.select(list(pending), [], [], left)
        for fd in readable:
            child = pending[fd]
            chunk = os.read(fd, 65536)
            if not chunk:
                del pending[fd]
                raise MeshError(f"{child.name} exited before it was ready (code {child.poll()})")
            child.buffer += chunk
            if b"\n" in child.buffer:
                line, _, child.buffer = child.buffer.partition(b"\n")
                child.report = json.loads(line)
                del pending[fd]


def stop_children(children: list[Child], *, grace: float, signum: int = signal.SIGTERM) -> None:
    """Ask every child to stop, wait up to ``grace`` seconds, then kill the rest."""
    for child in children:
        child.signal(signum)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(c.poll() is None for c in children):
        time.sleep(0.02)  # polling waitpid; there is no portable wait-with-timeout
    for child in children:
        if child.poll() is None:
            logger.warning("%s did not stop within %.1f s; killing it", child.name, grace)
            child.signal(signal.SIGKILL)
            os.waitpid(child.pid, 0)
            child.exit_code = -signal.SIGKILL
        child.close_pipe()
