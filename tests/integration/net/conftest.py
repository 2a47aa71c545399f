"""Fixtures for libp2p integration tests."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from netsupport import HELPER, PeerProcess, seed


@pytest.fixture(autouse=True)
def _quiet_libp2p() -> Iterator[None]:
    # The library logs a WARNING on every normal DHT stream close (notes, bug 7).
    logger = logging.getLogger("libp2p")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(old)


@pytest.fixture
def peer_process() -> Iterator[PeerProcess]:
    """One echo peer in a separate process, ready when its 'listening' line arrives."""
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), seed(90).hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()  # blocks until ready (or exit)
        assert line.startswith("listening /"), f"helper said {line!r}"
        yield PeerProcess(proc, line.split(" ", 1)[1])
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()
