"""A mesh peer in its own process, for integration tests.

Usage: ``python peer_process.py <seed hex> [bootstrap multiaddr ...]``. Answers
``/mesh/task/1.0.0`` requests with ``b"echo:" + request``, prints
``listening <multiaddr>`` once ready, and exits when its stdin closes (so a
crashed test leaves no orphan behind).
"""

from __future__ import annotations

import logging
import sys

import trio

from mesh.net.interface import TASK_PROTOCOL, Inbound
from mesh.net.libp2p_net import open_libp2p_network


async def echo(request: Inbound) -> bytes:
    message = request.message
    return b"echo:" + message


async def main(seed: bytes, bootstrap: list[str]) -> None:
    async with open_libp2p_network(identity_seed=seed, bootstrap=bootstrap) as net:
        net.set_request_handler(TASK_PROTOCOL, echo)
        print(f"listening {net.listen_addrs()[0]}", flush=True)
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    trio.run(main, bytes.fromhex(sys.argv[1]), sys.argv[2:])
