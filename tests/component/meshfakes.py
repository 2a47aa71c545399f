"""Test doubles for component tests: a fake runner and helpers to start nodes and clients.

Everything runs over :class:`mesh.net.memory.MemoryHub` on trio's clock, so a
test using the ``autojump_clock`` fixture sees exact virtual times.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from mesh.aio.clock import WallClock
from mesh.client.async_client import AsyncClient, ClientConfig
from mesh.core.envelope import Signed, sign_message
from mesh.core.identity import Identity
from mesh.core.messages import Task, encode_request
from mesh.core.tensors import Tensor
from mesh.core.values import Values, values_hash
from mesh.errors import InvalidInput
from mesh.node.config import NodeConfig
from mesh.node.service import Node
from mesh.testing import MemoryHub, fixed_wall_clock, inline_blocking

# Virtual epoch: trio's MockClock starts near 0; wall time = that + this offset.
EPOCH_OFFSET_S = 1_700_000_000.0
ROOT_A = hashlib.sha256(b"model a").digest()
ROOT_B = hashlib.sha256(b"model b").digest()
MODELS = {ROOT_A: "model-a"}


def wall() -> WallClock:
    return fixed_wall_clock(EPOCH_OFFSET_S)


def identity(n: int) -> Identity:
    return Identity.from_seed(bytes([n]) * 32)


def vector(*values: float) -> Tensor:
    import struct

    return Tensor("float32", (len(values),), struct.pack(f"<{len(values)}f", *values))


def inputs(n: float = 1.0) -> Values:
    return {"x": vector(n, 2.0, 3.0)}


@dataclass(frozen=True)
class FakeExecution:
    outputs: Values
    runtime: dict[str, str | int | bool]
    commitment: bytes
    batch_size: int
    compute_ms: float


@dataclass
class FakeRunner:
    """Echoes inputs back as outputs after ``compute_s`` of virtual time.

    ``gate``: when set to an unset Event, tasks wait on it (to fill queues).
    """

    served: Mapping[bytes, str] = field(default_factory=lambda: dict(MODELS))
    device_name: str = "cpu"
    capacity: int = 8
    compute_s: float = 0.01
    gate: trio.Event | None = None
    depth: int = 0
    ran: int = 0
    started: trio.Event = field(default_factory=trio.Event)

    @property
    def models(self) -> Mapping[bytes, str]:
        return self.served

    @property
    def device(self) -> str:
        return self.device_name

    def validate(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> None:
        if "bad" in inputs:
            raise InvalidInput("input 'bad' is not accepted by this model")

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
    ) -> FakeExecution:
        self.validate(model_root, inputs, params)
        if "crash" in inputs:
            raise RuntimeError("a bug in the model")
        self.depth += 1
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if on_start is not None:
                on_start()
            await trio.sleep(self.compute_s)
        finally:
            self.depth -= 1
        self.ran += 1
        outputs: Values = {f"out_{k}": v for k, v in inputs.items()}
        return FakeExecution(outputs, {"device": self.device_name, "fake": True}, b"", 1, 10.0)

    def queue_depth(self) -> int:
        return self.depth

    def queue_capacity(self) -> int:
        return self.capacity

    async def run_forever(self) -> None:
        await trio.sleep_forever()


async def serve_node(
    hub: MemoryHub,
    n: int,
    runner: FakeRunner,
    data_dir: Path,
    *,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
    bootstrap: tuple[str, ...] = (),
    **config: Any,
) -> None:
    """Run node number ``n`` on ``hub`` (use with ``nursery.start``) until cancelled,
    or, given ``stop``, until it is set: then the node leaves normally, which drains."""
    ident = identity(n)
    async with hub.join(ident.peer_id, bootstrap=bootstrap) as net:
        cfg = NodeConfig(identity=ident, data_dir=data_dir / f"node{n}", listen=(), **config)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        async with Node(
            cfg, network=net, runner=runner, wall_clock=wall(), blocking=inline_blocking
        ) as node:
            task_status.started(node)
            if stop is None:
                await trio.sleep_forever()
            else:
                await stop.wait()


async def start_node(
    nursery: trio.Nursery, hub: MemoryHub, n: int, runner: FakeRunner, data_dir: Path, **config: Any
) -> Node:
    node: Node = await nursery.start(
        functools.partial(serve_node, hub, n, runner, data_dir, **config)
    )
    return node


async def open_client(
    hub: MemoryHub,
    n: int,
    *,
    task_status: trio.TaskStatus[AsyncClient] = trio.TASK_STATUS_IGNORED,
    config: ClientConfig | None = None,
    bootstrap: tuple[str, ...] = (),
) -> None:
    ident = identity(n)
    async with (
        hub.join(ident.peer_id, bootstrap=bootstrap) as net,
        AsyncClient(net, identity=ident, config=config, wall_clock=wall()) as client,
    ):
        task_status.started(client)
        await trio.sleep_forever()


def signed_task(
    ident: Identity,
    values: Values,
    *,
    root: bytes = ROOT_A,
    now_ms: int,
    window_ms: int = 60_000,
    created_ms: int | None = None,
    nonce: bytes = b"\x01" * 16,
    target: bytes = b"",
    input_hash: bytes | None = None,
) -> Signed[Task]:
    created = now_ms if created_ms is None else created_ms
    task = Task(
        client=ident.public_key,
        nonce=nonce,
        created_ms=created,
        expires_ms=created + window_ms,
        model_root=root,
        input_hash=values_hash(values) if input_hash is None else input_hash,
        params={"seed": 1},
        verify="signature",
        target=target,
    )
    return sign_message(ident, task)


def request_bytes(task: Signed[Task], values: Values) -> bytes:
    return encode_request(task, values)


Sender = Callable[[bytes], Awaitable[bytes]]
