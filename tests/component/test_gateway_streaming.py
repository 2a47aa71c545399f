"""``stream: true`` through the gateway's app, the real client and nodes, on the fake clock.

The app is driven as a server drives it (an ASGI call whose body messages the
test reads one by one, and which it can disconnect), so the order of events is
observable: the runner holds a task after a few tokens until the test lets it
go, and the test reads the first chunks while it is held.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from test_gateway_app import KEY, REPLY, Mesh, gateway_mesh

from mesh.core.envelope import open_signed
from mesh.core.messages import Receipt, Task
from mesh.core.receipts import verify_receipt
from mesh.core.values import decode_values
from mesh.gateway.app import build_app
from mesh.gateway.catalog import Catalog
from mesh.gateway.config import GatewayConfig
from mesh.gateway.service import Gateway

pytestmark = pytest.mark.component

DONE = "[DONE]"


@dataclass
class Exchange:
    """One ASGI request in flight: its status, headers and SSE events as they come."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    messages: trio.MemoryReceiveChannel[dict[str, Any]] | None = None
    disconnected: trio.Event = field(default_factory=trio.Event)
    _buffer: str = ""

    async def start(self) -> None:
        assert self.messages is not None
        message = await self.messages.receive()
        assert message["type"] == "http.response.start"
        self.status = message["status"]
        self.headers = {k.decode(): v.decode() for k, v in message["headers"]}

    async def event(self) -> str | None:
        """The next SSE event's data (None once the body ended)."""
        assert self.messages is not None
        while "\n\n" not in self._buffer:
            if self.ended:
                return None
            message = await self.messages.receive()
            assert message["type"] == "http.response.body"
            self.body += message["body"]
            self._buffer += message["body"].decode()
            self.ended = not message.get("more_body", False)
        block, self._buffer = self._buffer.split("\n\n", 1)
        lines = [line[len("data: ") :] for line in block.split("\n") if line.startswith("data: ")]
        return "\n".join(lines)

    async def chunk(self) -> dict[str, Any]:
        data = await self.event()
        assert data is not None and data != DONE, data
        parsed: dict[str, Any] = json.loads(data)
        return parsed

    async def rest(self) -> list[str]:
        events = []
        while (data := await self.event()) is not None:
            events.append(data)
        return events


@asynccontextmanager
async def post(mesh: Mesh, app: Any, path: str, body: dict[str, Any]) -> AsyncIterator[Exchange]:
    """Call the app as a server would, for the duration of the block."""
    data = json.dumps(body).encode()
    sent = False
    send_in, received = trio.open_memory_channel[dict[str, Any]](1000)
    exchange = Exchange(messages=received)

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        await exchange.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await send_in.send(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"authorization", f"Bearer {KEY}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("gateway", 80),
    }
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, scope, receive, send)
        await exchange.start()
        yield exchange
        exchange.disconnected.set()


def app_of(mesh: Mesh, tmp_path: Path) -> Any:
    zoo = tmp_path / "zoo"
    gateway = Gateway(mesh.client, Catalog([zoo]), timeout_s=20.0)
    return build_app(
        gateway, GatewayConfig(timeout_s=20.0, api_keys=frozenset({KEY}), zoo_dirs=(zoo,))
    )


def _verify(mesh_field: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
    """The mesh field's one receipt verifies against its task and outputs."""
    ((receipt_b64,), (task_b64,), (output_b64,)) = (
        mesh_field["receipts"],
        mesh_field["tasks"],
        mesh_field["outputs"],
    )
    receipt = open_signed(base64.b64decode(receipt_b64), Receipt)
    task = open_signed(base64.b64decode(task_b64), Task)
    outputs = decode_values(base64.b64decode(output_b64))
    verify_receipt(receipt, task=task, outputs=outputs)
    return task.message, outputs


async def test_chat_stream_gives_chunks_before_the_worker_finishes_then_receipts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path) as mesh:
        runner = mesh.runners[0]
        runner.hold_after = 5
        app = app_of(mesh, tmp_path)
        body = {
            "model": "tiny-gpt",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 20,
            "seed": 3,
            "stream": True,
        }
        async with post(mesh, app, "/v1/chat/completions", body) as exchange:
            assert exchange.status == 200
            assert exchange.headers["content-type"].startswith("text/event-stream")
            role = await exchange.chunk()
            assert role["object"] == "chat.completion.chunk"
            assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            text = ""
            while len(text) < 5:
                chunk = await exchange.chunk()
                assert chunk["id"] == role["id"] and chunk["choices"][0]["finish_reason"] is None
                text += chunk["choices"][0]["delta"]["content"]
            # Five tokens' text arrived; the worker is held there and has not finished.
            assert text == REPLY[:5] and runner.held.is_set() and not runner.hold.is_set()
            runner.hold.set()
            events = await exchange.rest()
        assert events[-1] == DONE
        chunks = [json.loads(e) for e in events[:-1]]
        final = chunks[-1]
        text += "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
        assert text == REPLY[:20]
        assert final["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
        assert "usage" not in final
        task, outputs = _verify(final["mesh"])
        assert outputs["text"] == [text] and task.params["seed"] == 3
        assert role["id"] == f"chatcmpl-{final['mesh']['task_ids'][0]}"
        assert exchange.headers["x-mesh-task-id"] == final["mesh"]["task_ids"][0]


async def test_completion_stream_cuts_at_stop_and_ends_with_usage_and_receipts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path) as mesh:
        app = app_of(mesh, tmp_path)
        body = {
            "model": "tiny-gpt",
            "prompt": "x",
            "max_tokens": 30,
            "stop": ["y m", "zz"],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with post(mesh, app, "/v1/completions", body) as exchange:
            events = await exchange.rest()
        non_streamed = await mesh.http.post(
            "/v1/completions", json={**body, "stream": False, "stream_options": None}
        )
        assert events[-1] == DONE
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(c["object"] == "text_completion" for c in chunks)
        usage_chunk, finish = chunks[-1], chunks[-2]
        text = "".join(c["choices"][0]["text"] for c in chunks[:-1])
        # The stream's text is the non-streamed text, cut before the stop sequence.
        assert text == non_streamed.json()["choices"][0]["text"] == "Hello there. I am a tin"
        assert finish["choices"][0]["finish_reason"] == "stop" and finish["usage"] is None
        assert usage_chunk["choices"] == []
        assert usage_chunk["usage"] == {
            "prompt_tokens": 2,
            "completion_tokens": 30,  # every token the worker ran
            "total_tokens": 32,
        }
        _verify(usage_chunk["mesh"])


async def test_failures_before_the_first_chunk_are_openai_http_errors(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path, timeout_s=2.0) as mesh:
        app = app_of(mesh, tmp_path)
        for model, status, code in (
            ("no-such", 404, "model_not_found"),
            ("lonely", 504, "deadline_exceeded"),
        ):
            body = {"model": model, "prompt": "x", "stream": True}
            async with post(mesh, app, "/v1/completions", body) as exchange:
                assert exchange.status == status
                assert exchange.headers["content-type"] == "application/json"
                (data,) = [e async for e in _raw(exchange)]
                assert json.loads(data)["error"]["code"] == code
        # Redundant verification confirms a result after its last token: no stream.
        response = await mesh.http.post(
            "/v1/chat/completions",
            json={"model": "tiny-gpt", "messages": [{"role": "user", "content": "x"}],
                  "stream": True, "mesh": {"verify": "redundant"}},
        )  # fmt: skip
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "stream_unsupported"
        # An embedding model emits no tokens: refused before anything is sent.
        response = await mesh.http.post(
            "/v1/completions", json={"model": "small-embed", "prompt": "x", "stream": True}
        )
        assert response.status_code == 400, response.text
        assert not mesh.runners[0].seen


async def _raw(exchange: Exchange) -> AsyncIterator[bytes]:
    assert exchange.messages is not None
    body = b""
    while True:
        message = await exchange.messages.receive()
        body += message["body"]
        if not message.get("more_body", False):
            break
    yield body


async def test_a_failure_after_the_first_chunk_is_an_error_event(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path) as mesh:
        runner = mesh.runners[0]
        runner.hold_after = 3
        app = app_of(mesh, tmp_path)
        body = {"model": "tiny-gpt", "prompt": "x", "max_tokens": 20, "stream": True}
        async with post(mesh, app, "/v1/completions", body) as exchange:
            first = await exchange.chunk()
            assert first["choices"][0]["text"]
            await runner.held.wait()
            mesh.hub.kill(mesh.nodes[0].peer_id)  # the only worker dies mid-stream
            events = await exchange.rest()
        assert DONE not in events
        error = json.loads(events[-1])["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "stream_failed" and error["type"] == "server_error"
        assert "after" in error["message"]


async def test_a_caller_that_disconnects_stops_the_worker(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with gateway_mesh(tmp_path) as mesh:
        runner = mesh.runners[0]
        runner.hold_after = 2
        # Slower than the node's partial pace: each token is sent alone, so the
        # first one after the disconnect finds the requester gone mid-task.
        runner.step_s = 0.05
        app = app_of(mesh, tmp_path)
        body = {"model": "tiny-gpt", "prompt": "x", "max_tokens": 20, "stream": True}
        async with post(mesh, app, "/v1/completions", body) as exchange:
            await exchange.chunk()
            await runner.held.wait()
            exchange.disconnected.set()
            runner.hold.set()  # the worker's next token finds the requester gone
            await runner.stopped.wait()
        assert "ok" not in mesh.nodes[0]._handler.answered  # no result, no receipt
