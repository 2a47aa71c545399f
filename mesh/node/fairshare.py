"""When the node is full, which waiting task (if any) makes room for a newcomer.

A node admits a bounded number of tasks. If the first source to arrive could
keep every place, a source with fresh keys (or PeerIDs) per task would shut
everyone else out: ``busy`` for all (measured: honest success 4-6%). Instead,
when the node is full, a newcomer from a source holding fewer places takes the
place of a task still *waiting* for its turn (never one running) from a source
holding more: the longest-queue-drop rule, applied level by level.

Levels are those of :class:`mesh.node.sources.Source` (prefix, peer, key). A
waiting task W may make room for a newcomer N when, at the first level where
their paths differ, W's group holds at least two more places than N's group:
after the swap W's group still holds at least as many as N's, so two sources
never take places back and forth. Among the tasks that may make room, the one
taken is from the largest group at the broadest level, then from its largest
sub-groups, and the latest admitted of those (the ones that waited longest
keep their places). The displaced task is answered ``busy`` and its client
goes elsewhere.

Sans-IO: it reads the task table's entries and returns a task id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from mesh.node.sources import Source

# A waiting task's group must hold this many more places than the newcomer's.
MARGIN = 2


@dataclass(frozen=True, slots=True)
class Held:
    """A task holding a place: its id, source, order of admission and whether it waits."""

    task_id: bytes
    source: Source
    order: int
    waiting: bool


def room_for(newcomer: Source, held: Iterable[Held]) -> bytes | None:
    """The id of the waiting task that gives its place to ``newcomer``, or None."""
    entries = list(held)
    counts: Counter[tuple[Hashable, ...]] = Counter()
    for entry in entries:
        path = entry.source.path
        for depth in range(1, len(path) + 1):
            counts[path[:depth]] += 1
    mine = newcomer.path
    best: tuple[object, ...] | None = None
    chosen: bytes | None = None
    for entry in entries:
        if not entry.waiting:
            continue
        path = entry.source.path
        level = next((i for i in range(len(path)) if path[i] != mine[i]), None)
        if level is None:
            continue  # the newcomer's own source: it cannot displace itself
        theirs = counts[path[: level + 1]]
        ours = counts[mine[: level + 1]]
        if theirs < ours + MARGIN:
            continue
        # Broadest level first, then the largest group, then its largest sub-groups,
        # then the latest admitted.
        rank = (
            level,
            -theirs,
            *(-counts[path[: depth + 1]] for depth in range(level + 1, len(path))),
            -entry.order,
        )
        if best is None or rank < best:
            best, chosen = rank, entry.task_id
    return chosen
