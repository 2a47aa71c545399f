"""Unwrapping exception groups that hold a single error.

Trio's nurseries wrap an error crossing them in an ``ExceptionGroup`` (strict
groups, the default since trio 0.25); a library stack of several nurseries
(ours plus libp2p's) nests them. For callers of the SDK and the CLI, one error
must stay that error: ``except NoPeersAvailable`` has to work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only non-group exception inside ``group`` (however nested), else None."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        else:
            leaves.append(item)
        if len(leaves) > 1:
            return None
    return leaves[0] if leaves else None


@contextmanager
def unwrap_single_error() -> Iterator[None]:
    """Re-raise a group holding exactly one ``Exception`` as that exception.

    Groups of several errors, and lone ``BaseException``s such as trio's
    ``Cancelled`` or ``KeyboardInterrupt``, pass through unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = single_leaf(group)
        if isinstance(leaf, Exception):
            raise leaf from None
        raise
