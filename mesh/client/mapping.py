"""Many tasks at once with an error per item: what ``map`` returns, in one place.

``AsyncClient.map`` (and any batched submission built later) runs items
concurrently and must not let one item's failure (one bad worker, one refused
input) cancel the others. Each item's outcome is kept in its place:

- :func:`run_items` runs ``run_one(i)`` for every index, at most ``concurrency``
  at a time, each to its own end (a result or a :class:`~mesh.errors.MeshError`;
  each item's deadline is its own business), and returns the outcomes in input
  order. Nothing but cancellation of the caller stops it early.
- :func:`results_or_raise` is ``map``'s default: the results, or, once every
  item finished, the error of the first item (in input order) that failed.

Errors that are not MeshErrors are bugs: they propagate (cancelling the rest).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio

from mesh.aio.groups import unwrap_single_error
from mesh.errors import MeshError

R = TypeVar("R")


async def run_items(
    run_one: Callable[[int], Awaitable[R]], count: int, *, concurrency: int
) -> list[R | MeshError]:
    """Outcomes of ``run_one(0..count-1)`` in input order, each a result or its MeshError."""
    outcomes: list[R | MeshError | None] = [None] * count
    limiter = trio.CapacityLimiter(max(1, concurrency))

    async def one(index: int) -> None:
        async with limiter:
            try:
                outcomes[index] = await run_one(index)
            except MeshError as exc:
                outcomes[index] = exc

    with unwrap_single_error():
        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(one, index)
    done: list[R | MeshError] = []
    for outcome in outcomes:
        assert outcome is not None  # every item ran to its end
        done.append(outcome)
    return done


def first_error(outcomes: Sequence[object]) -> MeshError | None:
    """The error of the first failed item, in input order; None when all succeeded."""
    return next((o for o in outcomes if isinstance(o, MeshError)), None)


def results_or_raise(outcomes: Sequence[R | MeshError]) -> list[R]:
    """Every result, or raise the first item's error (see :func:`first_error`)."""
    error = first_error(outcomes)
    if error is not None:
        raise error
    return [o for o in outcomes if not isinstance(o, MeshError)]
