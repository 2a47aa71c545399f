"""Merkle trees over leaf hashes: roots, inclusion paths, and their check.

One tree shape for every use (a model's tensors in :mod:`mesh.core.model_root`,
a batch's items in :mod:`mesh.core.batch`); each use hashes its own leaves with
the ``0x00`` prefix and its own encoding. The rest is fixed here::

    inner node  = sha256(b"\\x01" + left + right)
    empty tree  = sha256(b"\\x02")

An odd node at the end of a level is promoted unchanged. The prefixes keep
leaves, inner nodes and the empty tree apart (no second-preimage tricks).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

# (sibling is on the left, sibling hash), from the leaf up to the root
ProofStep = tuple[bool, bytes]

LEAF_PREFIX = b"\x00"
EMPTY_ROOT = hashlib.sha256(b"\x02").digest()


def leaf(encoded: bytes) -> bytes:
    """The leaf hash of an already encoded leaf: ``sha256(0x00 + encoded)``."""
    return hashlib.sha256(LEAF_PREFIX + encoded).digest()


def node(left: bytes, right: bytes) -> bytes:
    """An inner node: ``sha256(0x01 + left + right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _up(level: Sequence[bytes]) -> list[bytes]:
    parents = [node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        parents.append(level[-1])  # odd node promoted unchanged
    return parents


def root(leaves: Sequence[bytes]) -> bytes:
    """The root over ``leaves`` (leaf hashes, in order)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        level = _up(level)
    return level[0]


def path(leaves: Sequence[bytes], index: int) -> list[ProofStep]:
    """The inclusion path of ``leaves[index]`` up to the root.

    Raises:
        IndexError: ``index`` is outside the leaves.
    """
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of {len(leaves)}")
    level = list(leaves)
    steps: list[ProofStep] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            steps.append((sibling < index, level[sibling]))
        level, index = _up(level), index // 2
    return steps


def all_paths(leaves: Sequence[bytes]) -> list[list[ProofStep]]:
    """The inclusion path of every leaf, building each level once (``n log n``, not ``n^2``)."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        levels.append(_up(levels[-1]))
    result: list[list[ProofStep]] = []
    for index in range(len(leaves)):
        steps: list[ProofStep] = []
        position = index
        for level in levels[:-1]:
            sibling = position ^ 1
            if sibling < len(level):
                steps.append((sibling < position, level[sibling]))
            position //= 2
        result.append(steps)
    return result


def root_from_path(leaf_hash: bytes, steps: Sequence[ProofStep]) -> bytes:
    """The root that ``leaf_hash`` and its inclusion path lead to."""
    current = leaf_hash
    for sibling_is_left, sibling in steps:
        current = node(sibling, current) if sibling_is_left else node(current, sibling)
    return current
