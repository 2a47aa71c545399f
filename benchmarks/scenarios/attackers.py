"""Attack processes against a node, for the ``attacks`` scenario and the integration tests.

``python -m benchmarks.scenarios.attackers KIND --params JSON`` joins the mesh
through ``params["bootstrap"]`` and attacks ``params["target"]`` (a node's full
multiaddr) until SIGTERM/SIGINT or ``params["duration_s"]``. It prints
``@@engaged {...}`` once the attack is in place and ``@@done {...}`` (counters)
when it stops (a few kinds print more ``@@`` lines, named below); nothing
else on stdout. Each kind is one row of issue 10's
table:

- ``held_streams``: ``peers`` PeerIDs each hold ``streams`` streams after
  sending 3 header bytes, reopening each as soon as the node drops it;
- ``unfinished_frames``: ``streams`` streams (over ``peers`` PeerIDs) each send
  ``mib`` MiB of unfinished "more" frames, then hold the stream silently
  (``@@flooded {...}`` once every one of them has ended); with ``comeback``,
  a stream the node drops comes back as a new PeerID and sends the rest;
- ``heavy_tasks``: ``in_flight`` tiny-gpt tasks of ``max_tokens`` tokens kept in
  flight, from one client key (``keys="one"``) or a fresh key per task
  (``"fresh"``), over ``peers`` PeerIDs;
- ``invalid_tasks``: tasks the node refuses as ``invalid-input`` (a row too
  short for tiny-mlp), a fresh key each, ``in_flight`` at a time (task kinds
  stop after ``answers`` answers if given, printing ``@@answered {...}``);
- ``lying_worker``: a node serving tiny-mlp that answers ``invalid-input`` to
  every task (it runs the real node service with a runner that refuses);
- ``sybil_providers``: ``count`` PeerIDs announce themselves as providers of
  tiny-mlp under addresses of a TCP port that accepts connections and never
  answers;
- ``garbage``: ``count`` garbage messages of a few kinds (not MessagePack,
  wrong shapes, forged signatures, broken frames).

Attackers send raw requests through the network adapter (or raw streams), so
they skip the client's own checks and fairness, as a stranger's code would.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

ENGAGED = "@@engaged "
DONE = "@@done "
FLOODED = "@@flooded "  # unfinished_frames: every flooding stream has ended
# Every attacker request waits at most this long for an answer.
REQUEST_TIMEOUT_S = 30.0


def _say(prefix: str, payload: dict[str, Any]) -> None:
    sys.stdout.write(prefix + json.dumps(payload) + "\n")
    sys.stdout.flush()


@asynccontextmanager
async def _peers(
    count: int, bootstrap: list[str], *, listen: str = "/ip4/127.0.0.1/tcp/0"
) -> AsyncIterator[list[Any]]:
    """``count`` libp2p peers (fresh PeerIDs) joined through ``bootstrap``."""
    from mesh.net.libp2p_net import open_libp2p_network

    async with AsyncExitStack() as stack:
        nets = []
        for _ in range(count):
            nets.append(
                await stack.enter_async_context(
                    open_libp2p_network(
                        identity_seed=os.urandom(32),
                        listen=(listen,),
                        bootstrap=bootstrap,
                        dht_server=False,
                    )
                )
            )
        yield nets


def _target(params: dict[str, Any]) -> Any:
    from mesh.net.interface import PeerAddr

    addr = params["target"]
    return PeerAddr(addr.split("/p2p/")[1], (addr.split("/p2p/")[0],))


async def _raw_stream(net: Any, peer_id: str) -> Any:
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID

    from mesh.net.interface import TASK_PROTOCOL

    with trio.fail_after(10):
        return await net._host.new_stream(ID.from_base58(peer_id), [TProtocol(TASK_PROTOCOL)])


async def _until_dropped(stream: Any) -> None:
    """Wait until the node resets or closes ``stream``."""
    while True:
        try:
            if not await stream.read(65536):
                return
        except Exception:  # reset, EOF: the node let go
            return


# -- stream attacks ------------------------------------------------------------------


async def held_streams(params: dict[str, Any], stats: Counter[str], engaged: trio.Event) -> None:
    target = _target(params)
    async with _peers(params.get("peers", 16), params["bootstrap"]) as nets:
        opened = 0
        want = len(nets) * params.get("streams", 16)

        async def hold(net: Any) -> None:
            nonlocal opened
            while True:
                try:
                    stream = await _raw_stream(net, target.peer_id)
                    await stream.write(b"\x00\x00\x00")  # 3 of a header's 5 bytes
                except Exception:
                    stats["open_failed"] += 1
                    await trio.sleep(0.1)
                    continue
                stats["opened"] += 1
                opened += 1
                if opened >= want:
                    engaged.set()
                t0 = trio.current_time()
                await _until_dropped(stream)
                stats["dropped"] += 1
                stats["held_ms_total"] += int((trio.current_time() - t0) * 1000)

        async with trio.open_nursery() as nursery:
            for net in nets:
                for _ in range(params.get("streams", 16)):
                    nursery.start_soon(hold, net)


async def unfinished_frames(
    params: dict[str, Any], stats: Counter[str], engaged: trio.Event
) -> None:
    from mesh.core import limits
    from mesh.core.framing import FLAG_MORE, HEADER

    target = _target(params)
    frame = HEADER.pack(FLAG_MORE, limits.MAX_FRAME_BYTES) + bytes(limits.MAX_FRAME_BYTES)
    frames = params.get("mib", 48) * limits.MiB // limits.MAX_FRAME_BYTES
    streams = params.get("streams", 16)
    comeback = params.get("comeback", False)
    async with _peers(params.get("peers", 4), params["bootstrap"]) as nets:
        started = 0  # streams that sent their first frame, or were cut off before

        def one_started() -> None:
            nonlocal started
            started += 1
            if started == streams:
                engaged.set()  # every stream is flooding now (or already dropped)

        async def send(net: Any, left: int, first_frame: Callable[[], None]) -> int:
            """Frames still to send once ``net``'s stream was dropped (0: all sent)."""
            try:
                stream = await _raw_stream(net, target.peer_id)
                while left:
                    await stream.write(frame)
                    left -= 1
                    stats["mib_sent"] += limits.MAX_FRAME_BYTES // limits.MiB
                    first_frame()
            except Exception:
                stats["reset_while_sending"] += 1
                return left
            await _until_dropped(stream)  # hold it: never finish the message
            stats["dropped_while_held"] += 1
            return 0

        async def one(net: Any) -> None:
            counted = False

            def first_frame() -> None:
                nonlocal counted
                if not counted:
                    counted = True
                    one_started()

            left = await send(net, frames, first_frame)
            while left and comeback:
                # Dropped: come back as a new PeerID and send the rest.
                stats["comebacks"] += 1
                async with _peers(1, [params["target"]]) as (fresh,):
                    left = await send(fresh, left, first_frame)
            if not counted:
                one_started()  # cut off before its first frame

        async with trio.open_nursery() as nursery:
            for i in range(streams):
                nursery.start_soon(one, nets[i % len(nets)])
        _say(FLOODED, dict(stats))  # every stream is gone
        await trio.sleep_forever()  # stay until told to stop


# -- task attacks --------------------------------------------------------------------


def _task_request(identity: Any, model: str, inputs: Any, params: dict[str, int]) -> bytes:
    from mesh.client.models import resolve_model
    from mesh.core.envelope import sign_message
    from mesh.core.messages import Task, encode_request
    from mesh.core.values import values_hash

    now = int(time.time() * 1000)
    task = Task(
        client=identity.public_key,
        nonce=os.urandom(16),
        created_ms=now,
        expires_ms=now + 60_000,
        model_root=resolve_model(model),
        input_hash=values_hash(inputs),
        params=params,
        verify="signature",
        target=b"",
    )
    return encode_request(sign_message(identity, task), inputs)


async def _keep_in_flight(
    params: dict[str, Any],
    stats: Counter[str],
    engaged: trio.Event,
    make: Callable[[], bytes],
    *,
    listen: str = "/ip4/127.0.0.1/tcp/0",
) -> None:
    from mesh.core.messages import ErrorReply, decode_response
    from mesh.errors import MeshError
    from mesh.net.interface import TASK_PROTOCOL

    target = _target(params)
    in_flight = params.get("in_flight", 64)
    enough = params.get("answers", 0)  # stop after this many answers (0: never)
    async with _peers(params.get("peers", 4), params["bootstrap"], listen=listen) as nets:
        started = 0
        all_answered = trio.Event()

        async def loop(net: Any) -> None:
            nonlocal started
            while not all_answered.is_set():
                payload = make()
                started += 1
                stats["sent"] += 1
                if started >= in_flight:
                    engaged.set()
                try:
                    answer = await net.request(
                        target, TASK_PROTOCOL, payload, timeout=REQUEST_TIMEOUT_S
                    )
                    reply = decode_response(answer)
                    stats[reply.code if isinstance(reply, ErrorReply) else "ok"] += 1
                except MeshError as exc:
                    stats[type(exc).__name__] += 1
                    await trio.sleep(0.05)
                if enough and sum(stats.values()) - stats["sent"] >= enough:
                    all_answered.set()

        async with trio.open_nursery() as nursery:
            for i in range(in_flight):
                nursery.start_soon(loop, nets[i % len(nets)])
        _say(DONE.replace("done", "answered"), dict(stats))
        await trio.sleep_forever()


async def heavy_tasks(params: dict[str, Any], stats: Counter[str], engaged: trio.Event) -> None:
    from mesh.core.identity import Identity

    one = Identity.generate()
    fresh = params.get("keys", "one") == "fresh"
    task_params = {"max_tokens": params.get("max_tokens", 64), "seed": 1}

    def make() -> bytes:
        key = Identity.generate() if fresh else one
        return _task_request(key, "tiny-gpt", {"prompt": ["attack " * 4]}, task_params)

    await _keep_in_flight(params, stats, engaged, make)


async def invalid_tasks(params: dict[str, Any], stats: Counter[str], engaged: trio.Event) -> None:
    from mesh.core.identity import Identity
    from mesh.core.tensors import Tensor

    short_row = {"x": Tensor("float32", (1, 31), bytes(124))}  # tiny-mlp takes 32 columns

    def make() -> bytes:
        return _task_request(Identity.generate(), "tiny-mlp", short_row, {})

    await _keep_in_flight(params, stats, engaged, make)


# -- a lying worker ------------------------------------------------------------------


async def lying_worker(params: dict[str, Any], stats: Counter[str], engaged: trio.Event) -> None:
    import tempfile
    from pathlib import Path

    from mesh.core.identity import Identity
    from mesh.errors import InvalidInput
    from mesh.node.config import NodeConfig
    from mesh.node.runtime_runner import load_runtime_runner
    from mesh.node.service import Node, run_node

    class Refusing:
        """The real runner, except that every task's inputs are 'invalid'."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def validate(self, model_root: bytes, inputs: Any, params: Any) -> None:
            stats["refused"] += 1
            raise InvalidInput("(lying) this input does not fit")

    async def refusing_runner(config: NodeConfig) -> Any:
        return Refusing(await load_runtime_runner(config))

    with tempfile.TemporaryDirectory(prefix="mesh-liar-") as work:
        config = NodeConfig(
            identity=Identity.generate(),
            data_dir=Path(work),
            model_names=("tiny-mlp",),
            listen=("/ip4/127.0.0.1/tcp/0",),
            bootstrap=tuple(params["bootstrap"]),
            device="cpu",
            threads=1,
            capacity_refresh_s=10.0,
            load_gossip_s=1.0,
            net_timeout_s=3.0,
        )
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(
                lambda task_status: run_node(
                    config, runner_factory=refusing_runner, task_status=task_status
                )
            )
            stats["listening"] = 1
            _say("@@liar ", {"peer_id": node.peer_id})
            engaged.set()
            await trio.sleep_forever()


# -- Sybil providers -----------------------------------------------------------------


async def sybil_providers(params: dict[str, Any], stats: Counter[str], engaged: trio.Event) -> None:
    import multiaddr

    from mesh.client.models import resolve_model

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1024)  # the kernel completes handshakes; nobody ever reads or writes
    port = hole.getsockname()[1]
    root = resolve_model("tiny-mlp")
    try:
        async with _peers(params.get("count", 17), params["bootstrap"]) as nets:
            for net in nets:
                black_hole = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
                net._host.get_addrs = lambda addr=black_hole: [addr]
            while True:
                for net in nets:
                    try:
                        await net.provide(root, timeout=5)
                        stats["provided"] += 1
                    except Exception:
                        stats["provide_failed"] += 1
                engaged.set()
                await trio.sleep(10)  # re-announce, as a provider would
    finally:
        hole.close()


# -- garbage ---------------------------------------------------------------------------


def garbage_payloads(count: int) -> list[bytes]:
    """``count`` garbage requests of several kinds, in a fixed mix."""
    from mesh.core import canonical
    from mesh.core.identity import Identity
    from mesh.core.tensors import Tensor

    row = {"x": Tensor("float32", (1, 32), bytes(128))}
    good = _task_request(Identity.generate(), "tiny-mlp", row, {})
    decoded = canonical.decode(good)
    forged = dict(decoded)
    task = dict(forged["task"])
    task["sig"] = bytes(64)
    forged["task"] = task
    kinds: list[bytes] = [
        os.urandom(200),  # not MessagePack
        b"\xc1" * 50,  # a reserved MessagePack byte
        canonical.encode({"kind": "task"}),  # missing fields
        canonical.encode({"kind": "nonsense", "x": 1}),
        canonical.encode(forged),  # a forged signature
        canonical.encode([1, 2, 3] * 100),
    ]
    return [kinds[i % len(kinds)] for i in range(count)]


async def garbage(params: dict[str, Any], stats: Counter[str], engaged: trio.Event) -> None:
    from mesh.core.messages import ErrorReply, decode_response
    from mesh.errors import MeshError
    from mesh.net.interface import TASK_PROTOCOL

    target = _target(params)
    payloads = garbage_payloads(params.get("count", 500))
    async with _peers(1, params["bootstrap"]) as (net,):
        limiter = trio.CapacityLimiter(8)

        async def send(payload: bytes) -> None:
            async with limiter:
                try:
                    answer = await net.request(target, TASK_PROTOCOL, payload, timeout=10)
                    reply = decode_response(answer)
                    stats[reply.code if isinstance(reply, ErrorReply) else "ok"] += 1
                except MeshError as exc:
                    stats[type(exc).__name__] += 1

        async with trio.open_nursery() as nursery:
            for payload in payloads:
                nursery.start_soon(send, payload)
        stats["sent"] = len(payloads)
        engaged.set()
        await trio.sleep_forever()


KINDS: dict[str, Callable[[dict[str, Any], Counter[str], trio.Event], Awaitable[None]]] = {
    "held_streams": held_streams,
    "unfinished_frames": unfinished_frames,
    "heavy_tasks": heavy_tasks,
    "invalid_tasks": invalid_tasks,
    "lying_worker": lying_worker,
    "sybil_providers": sybil_providers,
    "garbage": garbage,
}


async def _main(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    stats: Counter[str] = Counter()
    engaged = trio.Event()
    started = time.monotonic()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            async def announce() -> None:
                await engaged.wait()
                _say(ENGAGED, {"kind": kind, "after_s": round(time.monotonic() - started, 2)})

            nursery.start_soon(stop_on_signal)
            nursery.start_soon(announce)
            nursery.start_soon(KINDS[kind], params, stats, engaged)
            if params.get("duration_s"):
                nursery.cancel_scope.deadline = trio.current_time() + params["duration_s"]
    return dict(stats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scenarios.attackers")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--params", default="{}", help="JSON: bootstrap, target, and the kind's")
    args = parser.parse_args(argv)
    from mesh.aio.groups import unwrap_single_error
    from mesh.net.logs import apply_library_log_policy

    apply_library_log_policy()
    with unwrap_single_error():
        stats = trio.run(_main, args.kind, json.loads(args.params))
    _say(DONE, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
