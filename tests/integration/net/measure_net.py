"""Measure the libp2p adapter on loopback: connect, 1 KB round trip, DHT lookups.

Run: ``python tests/integration/net/measure_net.py`` (about 10 s). Not a test:
it prints medians and ranges for the report; nothing asserts on time.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import trio
from netsupport import HELPER, addr_of, networks, seed

from mesh.net.interface import CAPACITY_NAMESPACE, TASK_PROTOCOL, PeerAddr
from mesh.net.libp2p_net import open_libp2p_network


def report(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    print(
        f"{name:<44} median {statistics.median(ms):7.2f} ms  "
        f"p10 {ms[len(ms) // 10]:7.2f}  p90 {ms[len(ms) * 9 // 10]:7.2f}  (n={len(ms)})"
    )


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def echo(peer: str, message: bytes) -> bytes:
    return message


async def main() -> None:
    payload = b"x" * 1024
    async with networks(5) as nets:
        worker, reader = nets[1], nets[2]
        worker.set_request_handler(TASK_PROTOCOL, echo)

        connects = []
        for i in range(10):
            async with open_libp2p_network(identity_seed=seed(100 + i)) as fresh:
                connects.append(await timed(lambda f=fresh: f.connect(addr_of(worker), timeout=5)))
        report("connect (TCP+Noise+Yamux, in-process)", connects)

        target = addr_of(worker)
        await reader.request(target, TASK_PROTOCOL, payload, timeout=5)
        rtts = [
            await timed(lambda: reader.request(target, TASK_PROTOCOL, payload, timeout=5))
            for _ in range(300)
        ]
        report("1 KB round trip, reused stream, in-process", rtts)

        roots = [bytes([i]) * 32 for i in range(20)]
        for root in roots:
            await worker.provide(root, timeout=5)
        finds = [
            await timed(lambda r=root: reader.find_providers(r, count=3, timeout=5))
            for root in roots
        ]
        report("find_providers, 5 peers (network lookup)", finds)

        for net in nets:
            net.set_record_validator(CAPACITY_NAMESPACE, lambda key, value: None)
        keys = [f"/{CAPACITY_NAMESPACE}/k{i}" for i in range(20)]
        puts = [await timed(lambda k=k: worker.put_record(k, b"v" * 300, timeout=5)) for k in keys]
        report("put_record, 5 peers", puts)
        gets = []
        for k in keys:
            # put_record stored a copy at the closest peers, reader among them:
            # drop it so the get goes to the network.
            reader._dht.value_store.remove(k.encode())
            gets.append(await timed(lambda k=k: reader.get_record(k, timeout=5)))
        report("get_record, 5 peers (network lookup)", gets)
        gets = [await timed(lambda k=k: reader.get_record(k, timeout=5)) for k in keys]
        report("get_record again (local store, validated)", gets)

    # Across processes: the server is a separate process with its own event loop.
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(HELPER), seed(90).hex()], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await proc.stdout.receive_some(1)
        addr = line.decode().strip().split(" ", 1)[1]
        peer = PeerAddr(addr.split("/p2p/")[1], (addr.split("/p2p/")[0],))
        async with open_libp2p_network(identity_seed=seed(91)) as client:
            report(
                "connect to another process", [await timed(lambda: client.connect(peer, timeout=5))]
            )
            await client.request(peer, TASK_PROTOCOL, payload, timeout=5)
            rtts = [
                await timed(lambda: client.request(peer, TASK_PROTOCOL, payload, timeout=5))
                for _ in range(300)
            ]
            report("1 KB round trip, reused stream, 2 processes", rtts)
            print(f"streams opened {client.stats.opened}, reused {client.stats.reused}")
    finally:
        proc.kill()
        await proc.wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    trio.run(main)
