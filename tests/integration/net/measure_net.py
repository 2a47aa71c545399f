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

from mesh.core.capacity import CAPACITY_NAMESPACE
from mesh.net.interface import LOAD_TOPIC, TASK_PROTOCOL, Inbound, PeerAddr
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


async def echo(request: Inbound) -> bytes:
    message = request.message
    return message


async def spawn(index: int, bootstrap: list[str]) -> tuple[trio.Process, str]:
    """Start peer_process.py; return it and its multiaddr once it is listening."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(HELPER), seed(80 + index).hex(), *bootstrap],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        line += await proc.stdout.receive_some(1)
    return proc, line.decode().strip().split(" ", 1)[1]


def peer_addr(addr: str) -> PeerAddr:
    return PeerAddr(addr.split("/p2p/")[1], (addr.split("/p2p/")[0],))


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

        # Gossipsub: 256 B from one peer to the 4 others, once the mesh formed.
        channels = [await net.subscribe(LOAD_TOPIC) for net in nets[1:]]
        with trio.fail_after(20):
            while True:  # publish until every subscriber heard one: the mesh is up
                await nets[0].publish(LOAD_TOPIC, b"warm-up", timeout=2)
                with trio.move_on_after(0.5):
                    for channel in channels:
                        await channel.receive()
                    break
        for channel in channels:  # drop stragglers of the warm-up
            while True:
                try:
                    channel.receive_nowait()
                except trio.WouldBlock:
                    break
        latencies = []
        for i in range(20):
            await trio.sleep(0.05)  # a gentle rate, like load updates (not a test)
            data = b"%03d" % i + b"x" * 253
            start = time.perf_counter()
            await nets[0].publish(LOAD_TOPIC, data, timeout=2)
            with trio.fail_after(5):
                for channel in channels:
                    while (await channel.receive())[1] != data:
                        pass
            latencies.append(time.perf_counter() - start)
        report("gossipsub 256 B, all 4 receivers, in-process", latencies)

    # Separate processes: 4 DHT peers, each with its own event loop, and two
    # peers in this process (a worker that provides and puts, a reader).
    procs: list[trio.Process] = []
    try:
        first, boot = await spawn(0, [])
        procs.append(first)
        for i in range(1, 4):
            procs.append((await spawn(i, [boot]))[0])
        async with (
            open_libp2p_network(identity_seed=seed(91), bootstrap=[boot]) as worker,
            open_libp2p_network(identity_seed=seed(92), bootstrap=[boot]) as reader,
        ):
            far = peer_addr(boot)
            await reader.request(far, TASK_PROTOCOL, payload, timeout=5)
            rtts = [
                await timed(lambda: reader.request(far, TASK_PROTOCOL, payload, timeout=5))
                for _ in range(300)
            ]
            report("1 KB round trip, reused stream, 2 processes", rtts)

            async with open_libp2p_network(identity_seed=seed(93)) as fresh:
                report(
                    "connect to another process",
                    [await timed(lambda: fresh.connect(far, timeout=5))],
                )

            roots = [bytes([i]) * 32 for i in range(20)]
            provides = [await timed(lambda r=r: worker.provide(r, timeout=5)) for r in roots]
            report("provide, 6 peers / 5 processes", provides)
            finds = [
                await timed(lambda r=r: reader.find_providers(r, count=3, timeout=5)) for r in roots
            ]
            report("find_providers, 6 peers / 5 processes", finds)

            for net in (worker, reader):
                net.set_record_validator(CAPACITY_NAMESPACE, lambda key, value: None)
            keys = [f"/{CAPACITY_NAMESPACE}/k{i}" for i in range(20)]
            puts = [
                await timed(lambda k=k: worker.put_record(k, b"v" * 300, timeout=5)) for k in keys
            ]
            report("put_record, 6 peers / 5 processes", puts)
            gets = [await timed(lambda k=k: reader.get_record(k, timeout=5)) for k in keys]
            report("get_record, 6 peers / 5 processes", gets)
    finally:
        for proc in procs:
            proc.kill()
            await proc.wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    trio.run(main)
