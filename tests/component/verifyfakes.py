"""Test doubles for the verification tests: a fake language model and request taps.

:class:`FakeGenRunner` "generates" tokens that are a pure function of the
prompt (so every honest worker emits the same ones) with a commitment that is a
hash of them, and checks a generation the way a real worker would: it answers
pass only for the tokens and commitment it would have produced itself.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import trio
from meshfakes import ROOT_A, FakeExecution

from mesh.core.checks import CheckRequest
from mesh.core.messages import Request, decode_request
from mesh.core.partials import runtime_class
from mesh.core.tensors import Tensor
from mesh.core.values import Values, encode_values
from mesh.net.interface import TASK_PROTOCOL, Inbound
from mesh.node.runner import TokenHook
from mesh.node.service import Node

TOKENS = 6


def fake_tokens(inputs: Values) -> list[int]:
    """The tokens every honest fake worker emits for ``inputs``."""
    digest = hashlib.sha256(encode_values(inputs)).digest()
    return list(digest[:TOKENS])


def token_tensor(tokens: list[int]) -> Tensor:
    return Tensor("int64", (len(tokens),), struct.pack(f"<{len(tokens)}q", *tokens))


def fake_commitment(tokens: list[int]) -> bytes:
    return b"FAKE" + hashlib.sha256(bytes(tokens)).digest()


@dataclass
class FakeGenRunner:
    """A fake language model runner with commitments and checks (see the module docstring).

    ``invariant``: whether its runtime claim says batch-invariant (one class).
    """

    served: Mapping[bytes, str] = field(default_factory=lambda: {ROOT_A: "fake-lm"})
    invariant: bool = True
    dtype: str = "float32"
    compute_s: float = 0.01
    ran: int = 0
    checked: int = 0

    @property
    def models(self) -> Mapping[bytes, str]:
        return self.served

    @property
    def device(self) -> str:
        return "cpu"

    def validate(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> None:
        """Every input fits this fake."""

    def runtime(self) -> dict[str, str | int | bool]:
        return {
            "device": "cpu",
            "dtype": self.dtype,
            "batch_invariant": self.invariant,
            "batch_size": 1,
        }

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: TokenHook | None = None,
    ) -> FakeExecution:
        if on_start is not None:
            on_start()
        await trio.sleep(self.compute_s)
        self.ran += 1
        tokens = fake_tokens(inputs)
        if on_tokens is not None:  # streamed: each token and its two hex digits
            for token in tokens:
                on_tokens([token], bytes([token]).hex())
        outputs: Values = {"text": [bytes(tokens).hex()], "token_ids": token_tensor(tokens)}
        return FakeExecution(outputs, self.runtime(), fake_commitment(tokens), 1, 10.0)

    async def check_generation(
        self, model_root: bytes, request: CheckRequest, params: dict[str, int]
    ) -> tuple[bool, str, dict[str, str | int | bool]]:
        await trio.sleep(self.compute_s / 2)
        self.checked += 1
        tokens = fake_tokens(request.inputs)
        if request.token_ids != token_tensor(tokens):
            return False, "the tokens are not the ones the model emits", self.runtime()
        if request.commitment != fake_commitment(tokens):
            return False, "the commitment does not match", self.runtime()
        return True, "", self.runtime()

    def runtime_class(self, model_root: bytes) -> dict[str, str | int | bool]:
        return runtime_class(self.runtime())

    def queue_depth(self) -> int:
        return 0

    def queue_capacity(self) -> int:
        return 8

    async def run_forever(self) -> None:
        await trio.sleep_forever()


def tap_requests(node: Node) -> list[Request]:
    """Record every task request ``node`` receives (decoded), then answer as before."""
    seen: list[Request] = []
    honest = node._handler.handle

    async def tapped(inbound: Inbound) -> bytes:
        seen.append(decode_request(inbound.message))
        return await honest(inbound)

    node._network.set_request_handler(TASK_PROTOCOL, tapped)
    return seen
