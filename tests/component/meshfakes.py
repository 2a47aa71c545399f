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
from mesh.core.partials import token_tensor
from mesh.core.tensors import Tensor
from mesh.core.values import Values, values_hash
from mesh.errors import InvalidInput
from mesh.node.config import NodeConfig
from mesh.node.runner import TokenHook
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
        on_tokens: TokenHook | None = None,
    ) -> FakeExecution:
        if on_tokens is not None:  # as the executor answers for models that emit no tokens
            raise InvalidInput("this model emits no tokens to stream")
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

    def runtime_class(self, model_root: bytes) -> dict[str, str | int | bool]:
        return {"device": self.device_name, "fake": True}

    def queue_depth(self) -> int:
        return self.depth

    def queue_capacity(self) -> int:
        return self.capacity

    async def run_forever(self) -> None:
        await trio.sleep_forever()


def fake_tokens(values: Values, params: Mapping[str, int]) -> list[int]:
    """The token ids a :class:`TokenRunner` generates: a function of the prompt and params."""
    prompt = values["prompt"]
    assert isinstance(prompt, list)
    seed, count = params.get("seed", 0), params.get("max_tokens", 8)
    return [(seed * 7 + len(prompt[0]) + i * 3) % 26 for i in range(count)]


def fake_text(ids: list[int]) -> str:
    """The text of :func:`fake_tokens` ids: one letter per token."""
    return "".join(chr(ord("a") + i) for i in ids)


@dataclass
class TokenRunner(FakeRunner):
    """A generation double: ``fake_tokens`` one per ``step_s`` of virtual time, streamed.

    Outputs ``{"text": [...], "token_ids": int64 [n]}`` like the zoo's generators.

    Attributes:
        step_s: virtual time per token.
        hold_after: after this many tokens of a task, wait for ``hold`` (``held`` is
            set when a task gets there).
        lie: ``"partials"`` streams other tokens than the result holds.
        text_lag: each token's text comes with the next token (the last as a text-only
            piece), as a detokenizer holding back an incomplete character does.
        runtime_extra: added to the runtime class (another class than the others').
        emitted: tokens generated, all tasks.
        cancelled: runs stopped because their caller went away.
    """

    step_s: float = 0.01
    hold_after: int | None = None
    hold: trio.Event = field(default_factory=trio.Event)
    held: trio.Event = field(default_factory=trio.Event)
    lie: str = ""
    text_lag: bool = False
    runtime_extra: dict[str, str | int | bool] = field(default_factory=dict)
    emitted: int = 0
    cancelled: int = 0
    stopped: trio.Event = field(default_factory=trio.Event)  # set when a run is cancelled
    generated: trio.Event = field(default_factory=trio.Event)  # set when a run made its last

    def runtime_class(self, model_root: bytes) -> dict[str, str | int | bool]:
        return {"device": self.device_name, "fake": True, **self.runtime_extra}

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: TokenHook | None = None,
    ) -> FakeExecution:
        ids = fake_tokens(inputs, params)
        self.depth += 1
        self.started.set()
        if on_start is not None:
            on_start()
        try:
            held_back = ""
            for index, token in enumerate(ids):
                if index == self.hold_after:
                    self.held.set()
                    await self.hold.wait()
                await trio.sleep(self.step_s)
                self.emitted += 1
                if on_tokens is None:
                    continue
                shown = (token + 1) % 26 if self.lie == "partials" else token
                text = fake_text([shown])
                if self.text_lag:
                    text, held_back = held_back, text
                on_tokens([shown], text)
            self.generated.set()
            if on_tokens is not None and held_back:
                on_tokens([], held_back)
        except trio.Cancelled:
            self.cancelled += 1
            self.stopped.set()
            raise
        finally:
            self.depth -= 1
        self.ran += 1
        outputs: Values = {"text": [fake_text(ids)], "token_ids": token_tensor(ids)}
        runtime = {**self.runtime_class(model_root), "batch_size": 1}
        return FakeExecution(outputs, runtime, b"", 1, self.step_s * len(ids) * 1000)


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
    params: dict[str, int] | None = None,
) -> Signed[Task]:
    created = now_ms if created_ms is None else created_ms
    task = Task(
        client=ident.public_key,
        nonce=nonce,
        created_ms=created,
        expires_ms=created + window_ms,
        model_root=root,
        input_hash=values_hash(values) if input_hash is None else input_hash,
        params={"seed": 1} if params is None else params,
        verify="signature",
        target=target,
    )
    return sign_message(ident, task)


def request_bytes(task: Signed[Task], values: Values) -> bytes:
    return encode_request(task, values)


Sender = Callable[[bytes], Awaitable[bytes]]
