"""The gateway's app over a real AsyncClient and real nodes on the memory network.

Only the model runner is a double (it answers in the zoo models' output
schemas); the HTTP app, the service, the mesh client, the nodes' handlers,
receipts and admission are the real ones, on trio's fake clock. An operator
zoo made per test adds small models: one embed model taking 2 texts per task
(so a request spreads over several tasks), a generate model without a chat
template, and one that nobody serves.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import random
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from meshfakes import ROOT_A, FakeExecution, FakeRunner, open_client, start_node

from mesh.client.async_client import AsyncClient, ClientConfig
from mesh.core import canonical
from mesh.core.envelope import open_signed
from mesh.core.messages import Receipt, Task
from mesh.core.receipts import verify_receipt
from mesh.core.tensors import Tensor
from mesh.core.values import Values, decode_values
from mesh.errors import InvalidInput
from mesh.gateway.app import build_app
from mesh.gateway.catalog import Catalog
from mesh.gateway.config import GatewayConfig
from mesh.gateway.service import Gateway
from mesh.net.interface import TASK_PROTOCOL, Inbound
from mesh.node.runner import TokenHook
from mesh.node.service import Node
from mesh.runtime.zoo import Zoo
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

TINY_GPT = Zoo.builtin().manifest("tiny-gpt").model_root
SMALL_EMBED = bytes([0xE1]) * 32
NO_TEMPLATE = bytes([0xE2]) * 32
LONELY = bytes([0xE3]) * 32
SERVED = {
    TINY_GPT: "tiny-gpt",
    SMALL_EMBED: "small-embed",
    NO_TEMPLATE: "plain-gen",
    ROOT_A: "model-a",
}
REPLY = "Hello there. I am a tiny model! Bye"
KEY = "sk-test-key"
CLIENT = 40

_MANIFEST = """
name = "{name}"
kind = "{kind}"
model_root = "{root}"
[architecture]
file = "model.py"
[weights]
source = "seed"
seed = 1
[tokenizer]
kind = "bytes"
eos_id = 256
[inputs.{input}]
dtype = "str"
shape = [-1]
[outputs.{output}]
dtype = "{dtype}"
shape = [-1, {width}]
[limits]
max_texts = 2
max_tokens = 32
"""


def _zoo(path: Path) -> Path:
    for name, kind, root, input_, output, dtype in (
        ("small-embed", "embed", SMALL_EMBED, "texts", "embeddings", "float32"),
        ("plain-gen", "generate", NO_TEMPLATE, "prompt", "text", "str"),
        ("lonely", "generate", LONELY, "prompt", "text", "str"),
    ):
        entry = path / name
        entry.mkdir(parents=True)
        (entry / "manifest.toml").write_text(
            _MANIFEST.format(
                name=name, kind=kind, root=root.hex(), input=input_, output=output, dtype=dtype,
                width=4,
            )
        )  # fmt: skip
    return path


@dataclass
class ZooRunner(FakeRunner):
    """Answers like the zoo's models: text and token ids, or one 4-float vector per text."""

    seen: list[tuple[bytes, Values, dict[str, int]]] = field(default_factory=list)
    step_s: float = 0.001  # per streamed token
    hold_after: int | None = None  # a streamed task waits for ``hold`` after this many tokens
    hold: trio.Event = field(default_factory=trio.Event)
    held: trio.Event = field(default_factory=trio.Event)
    stopped: trio.Event = field(default_factory=trio.Event)  # a streamed task was cancelled

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: TokenHook | None = None,
    ) -> FakeExecution:
        self.seen.append((model_root, inputs, dict(params)))
        if self.gate is not None:
            self.depth += 1
            try:
                await self.gate.wait()
            finally:
                self.depth -= 1
        if on_start is not None:
            on_start()
        await trio.sleep(self.compute_s)
        outputs: Values
        if model_root == SMALL_EMBED:
            if on_tokens is not None:
                raise InvalidInput("small-embed emits no tokens to stream")
            texts = inputs["texts"]
            assert isinstance(texts, list)
            flat = [float(x) for t in texts for x in (len(t), ord(t[0]), 1.0, -0.5)]
            data = struct.pack(f"<{len(flat)}f", *flat)
            outputs = {"embeddings": Tensor("float32", (len(texts), 4), data)}
        else:
            ids = list(REPLY.encode())[: params["max_tokens"]]
            try:
                for index, token in enumerate(ids if on_tokens is not None else []):
                    if index == self.hold_after:
                        self.held.set()
                        await self.hold.wait()
                    await trio.sleep(self.step_s)
                    on_tokens([token], bytes([token]).decode())  # type: ignore[misc]
            except trio.Cancelled:
                self.stopped.set()
                raise
            data = struct.pack(f"<{len(ids)}q", *ids)
            outputs = {
                "text": [bytes(ids).decode()],
                "token_ids": Tensor("int64", (len(ids),), data),
            }
        return FakeExecution(outputs, {"device": "cpu", "fake": True}, b"", 1, 10.0)


@dataclass
class Mesh:
    http: httpx.AsyncClient
    runners: list[ZooRunner]
    nodes: list[Node]
    client: AsyncClient
    hub: MemoryHub
    nursery: trio.Nursery


@asynccontextmanager
async def gateway_mesh(
    tmp_path: Path,
    *,
    nodes: int = 1,
    timeout_s: float = 20.0,
    keys: frozenset[str] | None = frozenset({KEY}),
    max_queue: int = 64,
    gate: trio.Event | None = None,
) -> AsyncIterator[Mesh]:
    zoo = _zoo(tmp_path / "zoo")
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        runners = [ZooRunner(served=dict(SERVED), gate=gate) for _ in range(nodes)]
        started = [
            await start_node(nursery, hub, i + 1, runner, tmp_path, max_queue=max_queue)
            for i, runner in enumerate(runners)
        ]
        config = ClientConfig(timeout_s=timeout_s, zoo_dirs=(zoo,))
        client: AsyncClient = await nursery.start(
            functools.partial(open_client, hub, CLIENT, config=config)
        )
        gateway = Gateway(client, Catalog([zoo]), timeout_s=timeout_s, rng=random.Random(7))
        settings = GatewayConfig(timeout_s=timeout_s, api_keys=keys, zoo_dirs=(zoo,))
        transport = httpx.ASGITransport(app=build_app(gateway, settings))
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers=headers
        ) as http:
            yield Mesh(http, runners, started, client, hub, nursery)
        nursery.cancel_scope.cancel()


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    return error


def _check_receipts(response: httpx.Response, count: int) -> list[Task]:
    """Each receipt in the header verifies against the task and output in the body."""
    body = response.json()["mesh"]
    header = response.headers["X-Mesh-Receipt"].split(",")
    assert len(header) == len(body["receipts"]) == len(body["tasks"]) == count
    assert header == body["receipts"]
    tasks = []
    for receipt_b64, task_b64, output_b64, worker in zip(
        header, body["tasks"], body["outputs"], body["workers"], strict=True
    ):
        receipt = open_signed(base64.b64decode(receipt_b64), Receipt)
        task = open_signed(base64.b64decode(task_b64), Task)
        outputs = decode_values(base64.b64decode(output_b64))
        verify_receipt(receipt, task=task, outputs=outputs)
        assert receipt.message.task_id.hex() in body["task_ids"]
        assert worker in {f"{w}" for w in body["workers"]}
        tasks.append(task.message)
    return tasks


async def test_models_lists_what_live_peers_serve_and_this_zoo_knows(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path, nodes=2) as mesh:
        response = await mesh.http.get("/v1/models")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "list"
        models = {m["id"]: m for m in body["data"]}
        # model-a is served but unknown to the zoo; lonely is known but served by nobody.
        assert sorted(models) == ["plain-gen", "small-embed", "tiny-gpt"]
        gpt = models["tiny-gpt"]
        assert gpt["object"] == "model" and gpt["owned_by"] == "mesh"
        assert gpt["model_root"] == TINY_GPT.hex() and gpt["workers"] == 2
        assert gpt["kind"] == "generate" and isinstance(gpt["created"], int)


async def test_completion_sends_integer_params_and_returns_verifiable_receipts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mesh.gateway.app")
    async with gateway_mesh(tmp_path) as mesh:
        response = await mesh.http.post(
            "/v1/completions",
            json={
                "model": "tiny-gpt",
                "prompt": "Say hi",
                "max_tokens": 12,
                "temperature": 0.7,
                "top_p": 0.9,
                "seed": 11,
                "user": "u-1",
            },
            headers={"X-Mesh-Verify": "audit"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        ((root, inputs, params),) = mesh.runners[0].seen
        assert root == TINY_GPT and inputs == {"prompt": ["Say hi"]}
        assert params == {
            "max_tokens": 12,
            "temperature_milli": 700,
            "top_p_milli": 900,
            "seed": 11,
        }
        assert body["object"] == "text_completion" and body["model"] == "tiny-gpt"
        choice = body["choices"][0]
        assert choice == {
            "index": 0,
            "text": REPLY[:12],
            "logprobs": None,
            "finish_reason": "length",
        }
        # Prompt tokens as the byte tokenizer counts them: a start token, then one per byte.
        assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19}
        (task,) = _check_receipts(response, 1)
        assert task.verify == "audit" and task.params == params
        assert body["mesh"]["verify"] == "audit" and body["mesh"]["seed"] == 11
        assert body["mesh"]["workers"] == [mesh.nodes[0].peer_id]
        assert body["id"] == f"cmpl-{body['mesh']['task_ids'][0]}"
        # The end-user tag goes to the request log (and nowhere else).
        assert "POST /v1/completions -> 200" in caplog.text and "user='u-1'" in caplog.text


async def test_seed_is_drawn_when_absent_and_stop_cuts_the_text(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path) as mesh:
        response = await mesh.http.post(
            "/v1/completions",
            json={"model": "tiny-gpt", "prompt": "x", "max_tokens": 30, "stop": ["!", "."]},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        ((_, _, params),) = mesh.runners[0].seen
        assert body["mesh"]["seed"] == params["seed"]  # the seed the task carried, returned
        assert params["temperature_milli"] == 1000  # OpenAI's default temperature
        assert body["choices"][0]["text"] == "Hello there"
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"]["completion_tokens"] == 30  # what the worker ran


async def test_chat_renders_the_template_and_uses_the_models_room(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path) as mesh:
        messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
        response = await mesh.http.post(
            "/v1/chat/completions",
            # audit, not redundant: one node cannot be two independent workers (that is a 503).
            json={"model": "tiny-gpt", "messages": messages, "mesh": {"verify": "audit"}},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        prompt = (
            "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        ((_, inputs, params),) = mesh.runners[0].seen
        assert inputs == {"prompt": [prompt]}
        assert params["max_tokens"] == 128  # tiny-gpt's max_tokens limit, as the default
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"] == {"role": "assistant", "content": REPLY}
        assert body["usage"]["prompt_tokens"] == len(prompt.encode()) + 1
        (task,) = _check_receipts(response, 1)
        assert task.verify == "audit"


async def test_embeddings_spread_over_tasks_in_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path, nodes=2) as mesh:
        texts = ["a", "bb", "ccc", "dddd", "eeeee"]
        response = await mesh.http.post(
            "/v1/embeddings", json={"model": "small-embed", "input": texts}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        vectors = [d["embedding"] for d in body["data"]]
        assert vectors == [[len(t), ord(t[0]), 1.0, -0.5] for t in texts]
        assert body["usage"] == {
            "prompt_tokens": sum(len(t) + 1 for t in texts),
            "total_tokens": 20,
        }
        tasks = _check_receipts(response, 3)  # 2 texts per task
        assert all(t.verify == "signature" for t in tasks)
        ran = sorted(len(inputs["texts"]) for r in mesh.runners for _, inputs, _ in r.seen)  # type: ignore[arg-type]
        assert ran == [1, 2, 2]
        encoded = await mesh.http.post(
            "/v1/embeddings",
            json={"model": "small-embed", "input": "z", "encoding_format": "base64"},
        )
        raw = base64.b64decode(encoded.json()["data"][0]["embedding"])
        assert struct.unpack("<4f", raw) == (1.0, ord("z"), 1.0, -0.5)
        too_many = await mesh.http.post(
            "/v1/embeddings", json={"model": "small-embed", "input": ["t"] * 17}
        )
        _error(too_many, 400, "invalid_value")


async def test_requests_are_checked_before_the_mesh_is_asked(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path) as mesh:
        post = mesh.http.post
        _error(
            await post("/v1/completions", json={"model": "nope", "prompt": "x"}),
            404,
            "model_not_found",
        )
        _error(
            await post("/v1/embeddings", json={"model": "tiny-gpt", "input": "x"}),
            400,
            "wrong_endpoint",
        )
        _error(
            await post("/v1/completions", json={"model": "small-embed", "prompt": "x"}),
            400,
            "wrong_endpoint",
        )
        _error(
            await post(
                "/v1/chat/completions",
                json={"model": "plain-gen", "messages": [{"role": "user", "content": "x"}]},
            ),
            400,
            "chat_template_missing",
        )
        _error(
            await post(
                "/v1/completions", json={"model": "tiny-gpt", "prompt": "x", "max_tokens": 500}
            ),
            400,
            "context_length_exceeded",
        )
        _error(
            await post("/v1/completions", json={"model": "tiny-gpt", "prompt": "x" * 300}),
            400,
            "context_length_exceeded",
        )
        _error(
            await post(
                "/v1/completions",
                json={"model": "tiny-gpt", "prompt": "x", "stream_options": {"x": 1}},
            ),
            400,
            "invalid_value",
        )
        _error(
            await post("/v1/completions", json={"model": "tiny-gpt", "prompt": "x", "n": 2}),
            400,
            "unsupported_parameter",
        )
        _error(
            await post(
                "/v1/embeddings", json={"model": "small-embed", "input": "x", "dimensions": 8}
            ),
            400,
            "unsupported_parameter",
        )
        _error(await post("/v1/completions", content=b"{not json"), 400, "invalid_json")
        _error(await post("/v1/completions", content=b'{"model": NaN}'), 400, "invalid_json")
        _error(
            await post(
                "/v1/completions",
                json={"model": "tiny-gpt", "prompt": "x"},
                headers={"X-Mesh-Verify": "vibes"},
            ),
            400,
            "invalid_verify_mode",
        )
        _error(
            await post("/v1/completions", content=b"x" * (1024 * 1024 + 1)),
            413,
            "request_too_large",
        )
        _error(await mesh.http.get("/v1/nothing"), 404, "not_found")
        _error(await mesh.http.delete("/v1/models"), 405, "method_not_allowed")
        assert mesh.runners[0].seen == []  # nothing reached a worker


async def test_api_keys(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with gateway_mesh(tmp_path) as mesh:
        assert (await mesh.http.get("/v1/models")).status_code == 200
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
            response = await mesh.http.get("/v1/models", headers=headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            _error(
                response, 401, "invalid_api_key" if "wrong" in str(headers) else "missing_api_key"
            )
        body = {"model": "tiny-gpt", "prompt": "x"}
        wrong = await mesh.http.post(
            "/v1/completions", json=body, headers={"Authorization": "Bearer no"}
        )
        _error(wrong, 401, "invalid_api_key")
        assert mesh.runners[0].seen == []


async def test_an_open_gateway_takes_requests_without_a_key(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path, keys=None) as mesh:
        response = await mesh.http.get("/v1/models", headers={"Authorization": ""})
        assert response.status_code == 200


async def test_nobody_serving_is_504_at_the_deadline(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Providers may still appear until the deadline (records lag a node's start):
    # the client waits for them, then says the deadline ran out (issue 10).
    async with gateway_mesh(tmp_path, timeout_s=3.0) as mesh:
        start = trio.current_time()
        response = await mesh.http.post("/v1/completions", json={"model": "lonely", "prompt": "x"})
        error = _error(response, 504, "deadline_exceeded")
        assert "no provider" in error["message"]
        assert trio.current_time() - start <= 3.0 + 1e-6


async def test_a_hung_worker_is_504_at_the_deadline(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path, timeout_s=4.0, gate=trio.Event()) as mesh:
        start = trio.current_time()
        response = await mesh.http.post(
            "/v1/completions", json={"model": "tiny-gpt", "prompt": "x"}
        )
        error = _error(response, 504, "deadline_exceeded")
        assert error["type"] == "timeout_error"
        assert trio.current_time() - start <= 4.0 + 1e-6


async def test_busy_everywhere_is_429_with_retry_after(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()
    async with gateway_mesh(tmp_path, timeout_s=0.3, max_queue=1, gate=gate) as mesh:
        other: AsyncClient = await mesh.nursery.start(open_client, mesh.hub, CLIENT + 1)
        mesh.nursery.start_soon(
            functools.partial(other.run, TINY_GPT, {"prompt": ["x"]}, timeout=30, max_tokens=1)
        )
        await trio.testing.wait_all_tasks_blocked()
        assert mesh.nodes[0].status().in_flight == 1
        response = await mesh.http.post(
            "/v1/completions", json={"model": "tiny-gpt", "prompt": "x"}
        )
        error = _error(response, 429, "mesh_busy")
        assert error["type"] == "rate_limit_error"
        assert int(response.headers["Retry-After"]) >= 1
        gate.set()


async def test_results_that_do_not_verify_are_502(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path) as mesh:
        node = mesh.nodes[0]
        honest = node._handler.handle

        async def lying(request: Inbound) -> bytes:
            answer = canonical.decode(await honest(request))
            if answer.get("kind") == "result":
                answer["outputs"]["text"] = ["forged"]
            return canonical.encode(answer)

        node._network.set_request_handler(TASK_PROTOCOL, lying)
        response = await mesh.http.post(
            "/v1/completions", json={"model": "tiny-gpt", "prompt": "x"}
        )
        error = _error(response, 502, "verification_failed")
        assert error["type"] == "server_error"
        assert "X-Mesh-Receipt" not in response.headers
        json.dumps(error)  # plain JSON, nothing of the forged result in it
        assert "forged" not in error["message"]
