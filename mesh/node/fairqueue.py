"""Hierarchical fair queueing: which waiting task runs next, source by source.

Tasks wait under a *path* of levels (address prefix, transport peer, client
key: :class:`mesh.node.sources.Source`). At each level the next task comes from
the child that has been served the least so far (the sum of the costs of the
tasks it was given), ties going to the child that became active first; each
task's cost is then charged to every level on its path. Each level keeps a
virtual time, the served figure of the child it last chose: a child that
becomes active (new, or back after its queue emptied) starts at the larger of
that and what it was served before, so idleness banks no credit and a source
whose queue empties for a moment (its task was taken at once) keeps its debt
(start-time fair queueing, nested).

So with two prefixes waiting, each gets half of the turns whatever the number
of peers or keys behind either; within a prefix, peers share its half; within a
peer, keys share the peer's part. A source with any number of fresh keys or
PeerIDs behind one prefix still gets one prefix's share.

Sans-IO and synchronous: :mod:`mesh.node.gate` does the waiting.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


# Served figures of idle children are kept while they are ahead of the virtual
# time (they still owe turns); past this many, those that no longer are go.
_IDLE_KEPT = 64


@dataclass(eq=False, slots=True)
class _Node(Generic[T]):
    served: float = 0.0
    children: dict[Hashable, _Node[T]] = field(default_factory=dict)
    items: deque[tuple[T, float]] = field(default_factory=deque)
    vtime: float = 0.0  # the served figure of the child chosen last
    idle: dict[Hashable, float] = field(default_factory=dict)  # served figures of idle children

    def empty(self) -> bool:
        return not self.children and not self.items

    def activate(self, level: Hashable) -> _Node[T]:
        child = _Node[T](served=max(self.idle.pop(level, 0.0), self.vtime))
        self.children[level] = child
        return child

    def retire(self, level: Hashable) -> None:
        child = self.children.pop(level)
        if child.served > self.vtime:
            self.idle[level] = child.served
        if len(self.idle) > _IDLE_KEPT:
            self.idle = {k: v for k, v in self.idle.items() if v > self.vtime}


class FairQueue(Generic[T]):
    """Items waiting under paths of ``depth`` levels; :meth:`pop` gives the fair next one.

    Args:
        depth: levels in each path (3: prefix, peer, key).
    """

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._depth = depth
        self._root: _Node[T] = _Node()
        self._paths: dict[int, tuple[Hashable, ...]] = {}  # id(item) -> its path
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, path: Sequence[Hashable], item: T, cost: float = 1.0) -> None:
        """Add ``item`` under ``path``; ``cost`` is charged to its path when it is popped.

        Raises:
            ValueError: a path of the wrong depth, a cost <= 0, or an item already waiting.
        """
        key = tuple(path)
        if len(key) != self._depth or cost <= 0:
            raise ValueError(f"need a path of {self._depth} levels and a cost > 0")
        if id(item) in self._paths:
            raise ValueError("item is already waiting")
        node = self._root
        for level in key:
            child = node.children.get(level)
            node = child if child is not None else node.activate(level)
        node.items.append((item, cost))
        self._paths[id(item)] = key
        self._count += 1

    def pop(self) -> T | None:
        """The next item in fair order (None when nothing waits)."""
        if not self._count:
            return None
        trail: list[tuple[_Node[T], Hashable]] = []
        node = self._root
        for _ in range(self._depth):
            level = min(node.children, key=lambda k: node.children[k].served)
            trail.append((node, level))
            node.vtime = node.children[level].served
            node = node.children[level]
        item, cost = node.items.popleft()
        for parent, level in trail:
            parent.children[level].served += cost
        self._forget(item, trail)
        return item

    def remove(self, item: T) -> bool:
        """Take ``item`` out (its task was cancelled or displaced); False if not waiting."""
        key = self._paths.get(id(item))
        if key is None:
            return False
        trail: list[tuple[_Node[T], Hashable]] = []
        node = self._root
        for level in key:
            trail.append((node, level))
            node = node.children[level]
        for index, (waiting, _cost) in enumerate(node.items):
            if waiting is item:
                del node.items[index]
                break
        self._forget(item, trail)
        return True

    def _forget(self, item: T, trail: list[tuple[_Node[T], Hashable]]) -> None:
        del self._paths[id(item)]
        self._count -= 1
        for parent, level in reversed(trail):
            if parent.children[level].empty():
                parent.retire(level)
