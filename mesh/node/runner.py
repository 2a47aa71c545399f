"""What the node needs from the model runtime: the :class:`TaskRunner` protocol.

It matches ``mesh.runtime.executor.Executor`` (``run``, ``queue_depth``,
``queue_capacity``, ``run_forever``) plus ``validate`` (the node checks a task's
inputs before it admits it, so a task that will be refused takes no place and
no replay-cache entry) and what the node advertises: the model
roots and names it serves and its device. Component tests inject a fake runner;
``mesh.node.runtime_runner`` adapts the real executor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from mesh.core.values import Values

# Receives a generation's new token ids and the text they complete (a delta, may be
# ""), on the trio thread, as they are generated; a last call may carry only text
# (the tail a detokenizer held back). Concatenated, they are the final outputs.
TokenHook = Callable[[Sequence[int], str], None]


class ExecutionLike(Protocol):
    """The outcome of running one task (``mesh.runtime.executor.Execution``)."""

    @property
    def outputs(self) -> Values: ...

    @property
    def runtime(self) -> dict[str, str | int | bool]: ...

    @property
    def commitment(self) -> bytes: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def compute_ms(self) -> float: ...


class ServedModels(Protocol):
    """What a node advertises of its runner: the models served and the device."""

    @property
    def models(self) -> Mapping[bytes, str]:
        """model_root -> model name, for every model served."""
        ...

    @property
    def device(self) -> str: ...


class TaskRunner(ServedModels, Protocol):
    """Runs tasks off the event loop, with a bounded queue the node reads."""

    def validate(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> None:
        """Check one task's inputs and params against the model, before it is admitted.

        Raises:
            UnknownModel: the root is not served here.
            InvalidInput: the inputs or params do not fit the model.
        """
        ...

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: TokenHook | None = None,
    ) -> ExecutionLike:
        """Run one task; ``on_start`` is called (on the trio thread) when its batch starts.

        ``on_tokens`` (generation models only; others raise InvalidInput) hears the
        tokens and text as they come, and has heard all of them when this returns.
        """
        ...

    def runtime_class(self, model_root: bytes) -> dict[str, str | int | bool]:
        """The runtime class of ``model_root``'s runs (``mesh.core.partials.runtime_class``)."""
        ...

    def queue_depth(self) -> int: ...

    def queue_capacity(self) -> int: ...

    async def run_forever(self) -> None:
        """The runner's background loops (batching); runs in the node's nursery."""
        ...


class WrappedRunner:
    """A :class:`TaskRunner` that hands everything to ``inner``; subclasses change a part.

    The node wraps its runner (commitment checks, a researcher's lies): each wrapper
    overrides what it changes and inherits the rest, so the protocol is forwarded once.
    """

    def __init__(self, inner: TaskRunner) -> None:
        self._inner = inner

    @property
    def models(self) -> Mapping[bytes, str]:
        return self._inner.models

    @property
    def device(self) -> str:
        return self._inner.device

    def validate(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> None:
        self._inner.validate(model_root, inputs, params)

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: TokenHook | None = None,
    ) -> ExecutionLike:
        return await self._inner.run(
            model_root, inputs, params, on_start=on_start, on_tokens=on_tokens
        )

    def runtime_class(self, model_root: bytes) -> dict[str, str | int | bool]:
        return self._inner.runtime_class(model_root)

    def queue_depth(self) -> int:
        return self._inner.queue_depth()

    def queue_capacity(self) -> int:
        return self._inner.queue_capacity()

    async def run_forever(self) -> None:
        await self._inner.run_forever()
