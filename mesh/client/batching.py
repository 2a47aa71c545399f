"""How ``map`` groups its items into batched tasks (:mod:`mesh.core.batch`).

A batched task is signed once, admitted, replay-checked and receipted once,
and travels in one round trip, so small tasks stop paying those costs per item.
``map`` batches when the model allows it and the caller did not say otherwise:

- ``batch_size=None`` (the default): items are spread over the ``concurrency``
  batches in flight, ``ceil(items / concurrency)`` per batch, at most
  ``AUTO_BATCH_ITEMS``; models that generate text (whose receipts commit to
  their activations per task) and models no local zoo describes are not batched,
  and neither are maps verified beyond the signature (``audit``, ``redundant``):
  a wrong item found there earns its worker a signed verdict only as a task of
  its own (verdict evidence is one task, its receipt and its outputs), so
  those maps keep a task per item unless the caller asks for batches;
- ``batch_size=k``: batches of ``k`` items (``1``: a task per item, as before).

Each item of a batch comes back as its own :class:`~mesh.client.results.RunResult`
with the batch's receipt and task and its :class:`~mesh.core.batch.ItemProof`.
A batch that fails after its retries fails each of its items with that error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from mesh.core.batch import MAX_BATCH_ITEMS
from mesh.errors import ConfigError
from mesh.runtime.zoo import manifests

# Items per batch when map chooses: past a few hundred small items a batch gains
# little more (the per-batch costs are already spread thin) and one slow worker
# would hold too much of the map.
AUTO_BATCH_ITEMS = 256


def batch_size(
    count: int,
    *,
    concurrency: int,
    requested: int | None,
    model: str | bytes,
    root: bytes,
    mode: str = "signature",
    zoo_dirs: Sequence[Path] = (),
) -> int:
    """Items per batched task for a map of ``count`` items (1: no batching).

    Raises:
        ConfigError: ``requested`` is outside 1..MAX_BATCH_ITEMS.
    """
    if requested is not None:
        if not 1 <= requested <= MAX_BATCH_ITEMS:
            raise ConfigError(f"batch_size must be between 1 and {MAX_BATCH_ITEMS}")
        return requested
    if mode != "signature" or not batchable(model, root, zoo_dirs):
        return 1
    return max(1, min(AUTO_BATCH_ITEMS, math.ceil(count / max(1, concurrency))))


def batchable(model: str | bytes, root: bytes, zoo_dirs: Sequence[Path] = ()) -> bool:
    """True when the model's manifest is known and its kind is not ``generate``."""
    known = manifests(zoo_dirs)
    manifest = known.get(model) if isinstance(model, str) else None
    if manifest is None:
        manifest = next((m for m in known.values() if m.model_root == root), None)
    return manifest is not None and manifest.kind != "generate"


def split(count: int, size: int) -> list[range]:
    """Consecutive index ranges of at most ``size`` items covering ``count``."""
    return [range(i, min(i + size, count)) for i in range(0, count, size)]
