"""``--models auto``: which zoo models fit in the device's free memory.

The rule, in zoo order (the operator's zoo folders first, then the built-in zoo,
names sorted within each): a model is skipped when its weights are not on this
machine (operator checkpoints not given with ``--weights``, a weights package not
installed); otherwise it needs ``weights bytes x OVERHEAD`` and is taken when that
fits in what is left of the budget, ``free memory x (1 - RESERVE_FRACTION)``.
Every decision is returned with its reason, for the log.

- ``weights bytes``: seeded models (built from a seed, no files) count their
  parameters in the manifest's run dtype, the architecture built on torch's meta
  device (no memory used); file, folder and package models count the size of
  their safetensors files (as stored; checkpoints are usually stored in the dtype
  they run in).
- ``OVERHEAD = 1.5``: weights plus half again for activations of a full batch,
  the KV cache of short generations and the allocator's slack. A rule of thumb,
  not a measurement per model: an operator who knows better names the models
  (``--models a,b``).
- ``RESERVE_FRACTION = 0.1``: free memory left to everything else (the CUDA
  context grows, other processes, fragmentation).

:func:`choose` is pure (tested with made-up figures); :func:`weights_bytes`
reads manifests and files (torch only for seeded models, on the meta device).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh.errors import ModelError
from mesh.runtime.manifest import Manifest

OVERHEAD = 1.5
RESERVE_FRACTION = 0.1
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Sizing:
    """One candidate: its weights' size, or why its weights are not here."""

    name: str
    weights_bytes: int = 0
    unavailable: str = ""  # non-empty: skipped, with this reason


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a candidate is served, and why (one log line)."""

    name: str
    chosen: bool
    need_bytes: int
    reason: str


def choose(
    sizings: Sequence[Sizing],
    *,
    free_bytes: int,
    overhead: float = OVERHEAD,
    reserve_fraction: float = RESERVE_FRACTION,
) -> list[Decision]:
    """Decide in order which candidates fit (see the module docstring)."""
    budget = int(max(0, free_bytes) * (1 - reserve_fraction))
    decisions = []
    for sizing in sizings:
        if sizing.unavailable:
            decisions.append(Decision(sizing.name, False, 0, f"skipped: {sizing.unavailable}"))
            continue
        need = math.ceil(sizing.weights_bytes * overhead)
        if need <= budget:
            decisions.append(
                Decision(
                    sizing.name,
                    True,
                    need,
                    f"serving: needs {need / MiB:.1f} MiB of {budget / MiB:.1f} MiB left",
                )
            )
            budget -= need
        else:
            decisions.append(
                Decision(
                    sizing.name,
                    False,
                    need,
                    f"skipped: needs {need / MiB:.1f} MiB, only {budget / MiB:.1f} MiB left",
                )
            )
    return decisions


def weights_bytes(manifest: Manifest, weights_dir: Path | None) -> int:
    """The bytes of a model's weights (see the module docstring).

    Raises:
        ModelError: the weights are not on this machine, or the architecture fails.
    """
    if manifest.weights["source"] != "seed":
        from mesh.runtime.weights import weight_files

        return sum(f.stat().st_size for f in weight_files(manifest, weights_dir))
    import torch

    from mesh.runtime.device import TORCH_DTYPES
    from mesh.runtime.weights import load_architecture, resolve_config

    resolved = resolve_config(manifest, weights_dir)
    arch = load_architecture(resolved)
    try:
        with torch.device("meta"):
            module = arch.build(**resolved.config)
    except (NotImplementedError, RuntimeError):
        # Some architectures fill buffers at build (RoPE tables) and cannot be built
        # on meta; seeded models are small by nature, so build them for real.
        try:
            module = arch.build(**resolved.config)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot size {manifest.name}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot size {manifest.name}: {exc}") from exc
    element = torch.empty((), dtype=TORCH_DTYPES.get(manifest.dtype, torch.float32)).element_size()
    count: int = sum(p.numel() for p in module.parameters())
    return count * int(element)


def sizings(manifests: Sequence[Manifest], weights: dict[str, Path]) -> list[Sizing]:
    """A :class:`Sizing` per manifest, in order."""
    result = []
    for manifest in manifests:
        try:
            size = weights_bytes(manifest, weights.get(manifest.name))
        except (ModelError, OSError) as exc:
            result.append(Sizing(manifest.name, unavailable=str(exc)))
            continue
        result.append(Sizing(manifest.name, weights_bytes=size))
    return result
