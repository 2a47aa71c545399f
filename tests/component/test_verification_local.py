"""``ClientConfig(local_check=True)``: the client settles checks with its own copy of the model.

Nodes run the real zoo models (in worker threads, on the real clock) over the
memory network; one of them lies. The client recomputes locally: its own run is
the reference for tiny-mlp, its own forward pass the check for tiny-gpt.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from meshfakes import FakeExecution, open_client, start_node

from mesh.client.async_client import AsyncClient, ClientConfig
from mesh.core.evidence import verify_verdict_file
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.registry import LoadedModel, load_model
from mesh.runtime.zoo import find_manifest
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

CLIENT = 40


class _ModelRunner:
    """Runs one real zoo model in a worker thread (one task per batch)."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model

    @property
    def models(self) -> dict[bytes, str]:
        return {self._model.model_root: self._model.name}

    @property
    def device(self) -> str:
        return "cpu"

    def validate(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> None:
        self._model.validate(inputs, params)

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: object = None,
    ) -> FakeExecution:
        if on_tokens is not None:
            raise InvalidInput("this test runner does not stream")
        if on_start is not None:
            on_start()
        (out,) = await trio.to_thread.run_sync(self._model.run_batch, [(inputs, params)])
        return FakeExecution(out.outputs, self._model.runtime_claim(1), out.commitment, 1, 1.0)

    def runtime_class(self, model_root: bytes) -> dict[str, str | int | bool]:
        return self._model.runtime_claim(0)

    def queue_depth(self) -> int:
        return 0

    def queue_capacity(self) -> int:
        return 8

    async def run_forever(self) -> None:
        await trio.sleep_forever()


def _model(name: str) -> LoadedModel:
    return load_model(find_manifest(name), device="cpu")


async def _client(nursery: trio.Nursery, hub: MemoryHub) -> AsyncClient:
    config = ClientConfig(verify="audit", audit_rate=1.0, local_check=True)
    client: AsyncClient = await nursery.start(
        functools.partial(open_client, hub, CLIENT, config=config)
    )
    return client


@pytest.mark.parametrize(
    ("name", "inputs", "params"),
    [
        ("tiny-mlp", {"x": Tensor("float32", (1, 32), bytes(128))}, {}),
        ("tiny-gpt", {"prompt": ["checked here"]}, {"seed": 4, "max_tokens": 10, "top_k": 20}),
    ],
)
async def test_the_clients_own_check_settles_it_and_convicts_the_liar(
    name: str, inputs: Values, params: dict[str, int], tmp_path: Path
) -> None:
    model = _model(name)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        liar = await start_node(nursery, hub, 1, _ModelRunner(model), tmp_path, lie="perturb")  # type: ignore[arg-type]
        honest = await start_node(nursery, hub, 2, _ModelRunner(model), tmp_path)  # type: ignore[arg-type]
        client = await _client(nursery, hub)
        client._book.success(liar.peer_id, 1.0)  # the liar looks best: it answers first
        client._book.success(honest.peer_id, 50.0)
        result: Any = await client.run(name, inputs, timeout=120, **params)
        assert result.worker == honest.peer_id
        assert result.verification.confirmed_by[0] == "local"
        (out,) = model.run_batch([(inputs, params)])
        assert result.outputs == out.outputs
        (made,) = client.verdicts()
        verify_verdict_file(made)
        assert made.verdict.message.kind == ("commitment" if name == "tiny-gpt" else "outputs")
        assert client.reputation.excluded(liar.peer_id)
        # One local run is the reference for every result of a classifier's task; a
        # generation is checked once per result (the liar's, then the honest one's).
        local = client._verifier._local
        assert local is not None and local.runs == (2 if name == "tiny-gpt" else 1)
        nursery.cancel_scope.cancel()
