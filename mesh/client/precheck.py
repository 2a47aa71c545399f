"""A task's inputs checked against its model's manifest before it is sent.

The client runs the same torch-free rules a worker runs before it admits a task
(:mod:`mesh.runtime.checks`), so a task that leaves here fits the model, and
``invalid-input`` from a worker is the worker's fault: the task is retried
elsewhere and the worker is counted against once another worker proves the
task fine (:mod:`mesh.client.plan`). The manifest is found by name, or by
``model_root`` among the zoos' manifests; a model no local zoo knows (a hex root
of an operator's model) cannot be checked here, and then the workers decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.runtime.checks import check_task
from mesh.runtime.manifest import Manifest
from mesh.runtime.zoo import manifests


def manifest_for(model: str | bytes, root: bytes, zoo_dirs: Sequence[Path] = ()) -> Manifest | None:
    """The manifest of ``model`` (a zoo name) or of ``root``; None when no local zoo has it."""
    known = manifests(zoo_dirs)
    if isinstance(model, str) and model in known:
        return known[model]
    return next((m for m in known.values() if m.model_root == root), None)


def check_before_sending(
    model: str | bytes,
    root: bytes,
    inputs: Mapping[str, Tensor | Sequence[str]],
    params: Mapping[str, int],
    *,
    zoo_dirs: Sequence[Path] = (),
) -> bool:
    """Check a task's inputs and params against its manifest; False when none is known.

    Raises:
        InvalidInput: the task does not fit the model (nothing was sent).
    """
    manifest = manifest_for(model, root, zoo_dirs)
    if manifest is None:
        return False
    # The worker sees lists of strings (the wire has no tuples): check what it will see.
    values: Values = {k: v if isinstance(v, Tensor) else list(v) for k, v in inputs.items()}
    check_task(manifest, values, dict(params))
    return True
