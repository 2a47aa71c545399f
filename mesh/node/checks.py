"""Answering commitment checks: a task asking this node to check another's generation.

A check task (:mod:`mesh.core.checks`) is an ordinary signed task on a language
model whose inputs carry the tokens and the activation commitment to check. It
goes through the node's usual admission, replay cache and receipt log; only its
execution differs: instead of generating, the runner runs one forward pass
(``verify_task_outputs``) and the answer is ``{"check": ["pass"|"fail"],
"reason": [...]}``, signed by this node's receipt.

:class:`CheckingRunner` wraps any :class:`~mesh.node.runner.TaskRunner`; the
runner does the check itself when it offers ``check_generation`` (the real
runtime does, see :mod:`mesh.node.runtime_runner`); otherwise check tasks are
refused as ``invalid-input``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mesh.core.checks import CheckRequest, check_answer, parse_check
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.node.runner import ExecutionLike, TaskRunner, TokenHook, WrappedRunner


@runtime_checkable
class GenerationChecker(Protocol):
    """A runner that can check a generation with one forward pass."""

    async def check_generation(
        self, model_root: bytes, request: CheckRequest, params: dict[str, int]
    ) -> tuple[bool, str, dict[str, str | int | bool]]:
        """(passed, reason, runtime claim) for ``request`` under the task's ``params``.

        Raises:
            UnknownModel: the model is not served here.
            InvalidInput: the model is not a language model, or no tolerance fits.
        """
        ...


@dataclass(frozen=True)
class CheckExecution:
    """The outcome of one check, shaped like an execution for the receipt."""

    outputs: Values
    runtime: dict[str, str | int | bool]
    commitment: bytes
    batch_size: int
    compute_ms: float


class CheckingRunner(WrappedRunner):
    """Runs check tasks through ``inner.check_generation``, everything else through ``inner``."""

    def __init__(self, inner: TaskRunner) -> None:
        super().__init__(inner)
        self.checks = 0  # checks answered so far

    def validate(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> None:
        """Ordinary tasks: the model's checks. Check tasks: whether this worker runs checks
        (their contents are checked when they run)."""
        if parse_check(inputs) is None:
            self._inner.validate(model_root, inputs, params)
        elif not isinstance(self._inner, GenerationChecker):
            raise InvalidInput("this worker runs no commitment checks")

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: TokenHook | None = None,
    ) -> ExecutionLike:
        request = parse_check(inputs)
        if request is None:
            return await self._inner.run(
                model_root, inputs, params, on_start=on_start, on_tokens=on_tokens
            )
        if not isinstance(self._inner, GenerationChecker):
            raise InvalidInput("this worker runs no commitment checks")
        if on_tokens is not None:
            raise InvalidInput("a check emits no tokens to stream")
        if on_start is not None:
            on_start()
        started = time.perf_counter()
        passed, reason, runtime = await self._inner.check_generation(model_root, request, params)
        self.checks += 1
        compute_ms = (time.perf_counter() - started) * 1000.0
        return CheckExecution(check_answer(passed, reason), runtime, b"", 1, compute_ms)
