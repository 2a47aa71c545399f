"""An SDK user does not get py-libp2p's warnings on stderr unless asked for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROGRAM = """
import logging
import trio
from mesh.net.libp2p_net import open_libp2p_network

async def main():
    async with open_libp2p_network(identity_seed=bytes(32)):
        logging.getLogger("libp2p.kad_dht").warning("Failed to read DHT message from stream")

trio.run(main)
print("done")
"""


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, env=env
    )


def test_library_warnings_stay_off_stderr() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LIBP2P_DEBUG"}
    result = _run(env)
    assert result.returncode == 0 and result.stdout.strip() == "done"
    assert "Failed to read DHT message" not in result.stderr
