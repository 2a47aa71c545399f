"""Helpers for libp2p integration tests: networks in this process, peers in others."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from mesh.net.interface import PeerAddr
from mesh.net.libp2p_net import Libp2pNetwork, NetTimeouts, open_libp2p_network

HELPER = Path(__file__).with_name("peer_process.py")
FAST = NetTimeouts(dial=2.0, stream_open=2.0, request=3.0, dht=3.0, pubsub=2.0)


def seed(n: int) -> bytes:
    return bytes([n]) * 32


def addr_of(net: Libp2pNetwork) -> PeerAddr:
    """The PeerAddr others use to reach ``net``."""
    return PeerAddr(net.peer_id, tuple(a.split("/p2p/")[0] for a in net.listen_addrs()))


@asynccontextmanager
async def networks(count: int, *, first_seed: int = 1) -> AsyncIterator[list[Libp2pNetwork]]:
    """``count`` peers in this process; the first is everyone's bootstrap peer."""
    async with open_libp2p_network(identity_seed=seed(first_seed), timeouts=FAST) as boot:
        nets = [boot]
        async with _more(boot, count - 1, first_seed + 1, nets):
            yield nets


@asynccontextmanager
async def _more(
    boot: Libp2pNetwork, count: int, next_seed: int, nets: list[Libp2pNetwork]
) -> AsyncIterator[None]:
    if count == 0:
        yield
        return
    async with open_libp2p_network(
        identity_seed=seed(next_seed), bootstrap=boot.listen_addrs(), timeouts=FAST
    ) as net:
        nets.append(net)
        async with _more(boot, count - 1, next_seed + 1, nets):
            yield


class PeerProcess:
    """A peer started by ``peer_process.py``; ``addr`` is its full multiaddr."""

    def __init__(self, proc: subprocess.Popen[bytes], addr: str) -> None:
        self.proc = proc
        self.addr = addr
        self.peer = PeerAddr(addr.split("/p2p/")[1], (addr.split("/p2p/")[0],))

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
