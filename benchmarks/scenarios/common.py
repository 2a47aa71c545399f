"""Helpers shared by the scenario processes: progress lines, inputs, testnets, memory.

A scenario runs in its own process (see :mod:`benchmarks.scenarios.__main__`)
because a forked testnet must be started before that process runs trio, and
each testnet size needs a process that has not run trio yet.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mesh.core.tensors import Tensor
from mesh.core.values import Values

if TYPE_CHECKING:
    from mesh.testnet.launcher import Testnet

PROGRESS_PREFIX = "@@progress "
_PROGRESS_EVERY_S = 0.2  # at most five progress lines a second: the parent redraws a bar


class Progress:
    """Writes progress lines on stdout for the parent's tqdm bar.

    Each line is ``@@progress {"label": .., "done": .., "total": ..}``; the
    parent ignores everything else on stdout.
    """

    def __init__(self) -> None:
        self._label = ""
        self._total = 0
        self._done = 0
        self._last = 0.0

    def stage(self, label: str, total: int) -> None:
        """Start a new stage of ``total`` steps."""
        self._label, self._total, self._done = label, total, 0
        self._emit(force=True)

    def advance(self, steps: int = 1) -> None:
        self._done += steps
        self._emit(force=self._done >= self._total)

    def _emit(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < _PROGRESS_EVERY_S:
            return
        self._last = now
        line = json.dumps({"label": self._label, "done": self._done, "total": self._total})
        sys.stdout.write(PROGRESS_PREFIX + line + "\n")
        sys.stdout.flush()


def mlp_input(index: int, *, rows: int = 1) -> Values:
    """A deterministic tiny-mlp input (``rows`` x 32 float32) that differs per ``index``."""
    values = [((index * 31 + j * 7) % 23) / 11.0 - 1.0 for j in range(32 * rows)]
    return {"x": Tensor("float32", (rows, 32), struct.pack(f"<{32 * rows}f", *values))}


def pss_kb(pid: int) -> int | None:
    """Proportional set size of a process in KiB (``/proc/<pid>/smaps_rollup``), or None."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (``/proc/<pid>/stat``), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            # Fields after the command name (which may hold spaces), from ")" on.
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def testnet(
    nodes: int,
    *,
    models: tuple[str, ...] = ("tiny-mlp",),
    regions: tuple[str, ...] = (),
    ready_timeout_s: float = 120.0,
    liars: int = 0,
    lies: tuple[str, ...] = ("perturb",),
    **node: Any,
) -> Iterator[Testnet]:
    """A started testnet of ``nodes`` processes (libp2p logs quieted), stopped on exit.

    ``liars`` of them lie as ``lies`` say (round-robin; see mesh.node.lies).
    """
    from mesh.testnet.launcher import Testnet, TestnetConfig

    config = TestnetConfig(
        nodes=nodes,
        model_names=models,
        regions=regions,
        ready_timeout_s=ready_timeout_s,
        node=dict(node),
        liars=liars,
        lies=lies,
    )
    net = Testnet(config)
    net.start()
    try:
        yield net
    finally:
        net.stop()
