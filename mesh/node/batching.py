"""A batched task's items on the node: handed to the runner together, so its batches fill.

The task handler (:mod:`mesh.node.handler`) admits a batched task once -- one
signature, one replay entry, one slot of the client's share -- and then runs its
items here: every item goes to the runner (the executor, which groups
concurrent tasks of one model into its own batches of ``max_batch``), at most
``PARALLEL_ITEMS`` at a time so one big batch does not flood the executor's
queue ahead of everyone else's tasks. The receipt then covers the Merkle root
of the items' outputs (:mod:`mesh.core.batch`).

The first item that fails fails the batch (the rest are cancelled): the client
checked every item against the manifest before sending, so a refused item
means a broken task. Models whose executions carry an activation commitment
(generative models) are not batched: a receipt has room for one commitment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from mesh.aio.groups import unwrap_single_error
from mesh.core.batch import encode_items, hash_encoded, items_root
from mesh.core.messages import BATCH_PARAM
from mesh.core.values import Values
from mesh.errors import InternalError, InvalidInput
from mesh.node.runner import ExecutionLike, TaskRunner

# Items of one batch handed to the runner at once: four executor batches of 16,
# enough to keep its batches full while other clients' tasks still get in.
PARALLEL_ITEMS = 64


@dataclass(frozen=True, slots=True)
class BatchExecution:
    """What running every item of a batch came to.

    Attributes:
        outputs: each item's outputs, in order.
        runtime: the runtime claim (the first item's, with ``batch_items``).
        batch_size: the largest executor batch any item ran in.
        compute_ms: the items' compute time, added up.
    """

    outputs: list[Values]
    runtime: dict[str, str | int | bool]
    batch_size: int
    compute_ms: float


async def execute_items(
    runner: TaskRunner,
    model_root: bytes,
    items: Sequence[Values],
    params: dict[str, int],
    on_start: Callable[[], None],
) -> BatchExecution:
    """Run every item of a batch; ``on_start`` is called once, when the first item starts.

    Raises:
        InvalidInput: an item was refused (its index is named), or the model
            produces commitments and cannot be batched.
        InternalError: the model failed on an item.
    """
    item_params = {k: v for k, v in params.items() if k != BATCH_PARAM}
    executions: list[ExecutionLike | None] = [None] * len(items)
    pending = iter(range(len(items)))
    started = False

    def first_start() -> None:
        nonlocal started
        if not started:
            started = True
            on_start()

    async def worker() -> None:
        # A few workers taking the next item each (not a task per item waiting on
        # a limiter): measured ~10% of the node's event loop for 256 items.
        for index in pending:
            try:
                executions[index] = await runner.run(
                    model_root, items[index], item_params, on_start=first_start
                )
            except InvalidInput as exc:
                raise InvalidInput(f"item {index}: {exc}") from exc

    with unwrap_single_error():
        async with trio.open_nursery() as nursery:
            for _ in range(min(len(items), PARALLEL_ITEMS)):
                nursery.start_soon(worker)
    done = [e for e in executions if e is not None]
    if len(done) != len(items):
        raise InternalError("a batch item finished without an outcome")
    if any(e.commitment for e in done):
        raise InvalidInput("this model commits to its activations per task: it cannot be batched")
    runtime: dict[str, str | int | bool] = {**done[0].runtime, BATCH_PARAM: len(items)}
    return BatchExecution(
        outputs=[e.outputs for e in done],
        runtime=runtime,
        batch_size=max(e.batch_size for e in done),
        compute_ms=sum(e.compute_ms for e in done),
    )


def encode_outputs(outputs: Sequence[Values]) -> tuple[list[bytes], bytes]:
    """The outputs' canonical bytes (sent as they are) and the receipt's ``output_hash``:
    the Merkle root over their hashes."""
    encoded = encode_items(outputs)
    return encoded, items_root(hash_encoded(encoded))
