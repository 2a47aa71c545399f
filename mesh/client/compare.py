"""Do two results of one task agree? Per model kind, with the manifest's tolerances.

===============  ==============================================================================
kind             two results agree when
===============  ==============================================================================
``classify``     every float output is within ``eps = output_abs`` elementwise, and each row has
                 the same argmax, except rows whose two best values lie within ``2 eps`` of each
                 other (there the tolerance itself allows either winner)
``embed``        per row (length ``d``): ``cos(a, b) >= 1 - d eps^2 / (2 |a| |b|)`` and
                 ``| |a| - |b| | <= eps sqrt(d)``. Any two rows whose elements differ by at most
                 ``eps`` satisfy both (``|a - b| <= eps sqrt(d)``, and ``cos = (|a|^2 + |b|^2 -
                 |a - b|^2) / (2 |a| |b|)``), so the cosine bound is the manifest's tolerance
                 restated, not a new one: for unit vectors ``1 - d eps^2 / 2``; minilm-l6
                 float32 (``eps = 1e-5``, ``d = 384``): ``cos >= 1 - 1.9e-8``; bfloat16
                 (``eps = 0.005``): ``cos >= 0.9952``
``generate``     identical ``token_ids`` and texts, decided by comparison only when both receipts
                 claim one batch-invariant runtime class (device, dtype, torch, flags, threads:
                 everything but the batch size); across classes comparison cannot decide and the
                 activation-commitment check does (:mod:`mesh.core.checks`)
unknown model    identical outputs (no manifest: no tolerance is known)
===============  ==============================================================================

``eps`` is the manifest's tolerance for the two receipts' dtypes (the looser of
the two, :meth:`Manifest.tolerance`). The tolerances were measured on CPU, so a
disagreement between two *runtime classes* (another device, dtype or torch) is
taken as proof of a wrong answer only when it is gross, over ``GROSS_FACTOR``
tolerances (:func:`convicts`); a smaller one sets the result aside without a
verdict (it may be the hardware's). Outputs that are not floats (texts,
integers) must be identical for every kind. Honest results of one task agree
whatever the batch they ran in: on CPU the runtime is batch-invariant (identical
bytes), elsewhere the tolerances were measured across batch sizes and dtypes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.core.messages import RuntimeValue
from mesh.core.tensors import Tensor
from mesh.core.values import Values, values_hash
from mesh.errors import ModelError
from mesh.runtime.manifest import Manifest, Tolerance
from mesh.runtime.zoo import manifests

FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
# Keys of a runtime claim that may differ between two runs of one runtime class.
_PER_RUN_KEYS = frozenset({"batch_size"})


@dataclass(frozen=True, slots=True)
class Profile:
    """What the client knows of a model: its kind and manifest (None when not in a zoo).

    ``kind`` is the manifest's, or ``"unknown"``.
    """

    kind: str
    manifest: Manifest | None

    @property
    def commits(self) -> bool:
        """True for language models: their results carry activation commitments."""
        return self.kind == "generate"

    def tolerance(self, *dtypes: str) -> Tolerance | None:
        """The manifest's tolerance for runs in ``dtypes``; dtypes it does not list count
        as its own run dtype (a worker cannot loosen the comparison by naming one)."""
        if self.manifest is None:
            return None
        known = [d for d in dtypes if d in self.manifest.tolerances] or [self.manifest.dtype]
        try:
            return self.manifest.tolerance(*known)
        except ModelError:
            return None


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of comparing two results.

    Attributes:
        agree: the results agree (meaningful only when ``decided``).
        decided: False when comparison cannot tell (generations in two runtime
            classes): a commitment check must.
        distance: how far apart they are (max abs difference, or 1 - cosine).
        detail: one line saying why.
        ratio: for a disagreement, how many tolerances apart, in units of the
            per-element tolerance (infinite where no tolerance applies: an exact
            comparison, another shape, a value that is not finite).
    """

    agree: bool
    decided: bool
    distance: float
    detail: str
    ratio: float = math.inf


@functools.lru_cache(maxsize=256)
def _profile(root: bytes, zoo_dirs: tuple[Path, ...]) -> Profile:
    for manifest in manifests(zoo_dirs).values():
        if manifest.model_root == root:
            return Profile(manifest.kind, manifest)
    return Profile("unknown", None)


def profile_for(root: bytes, zoo_dirs: Sequence[Path] = ()) -> Profile:
    """The profile of the model with ``root`` (kind ``unknown`` when no zoo pins that root)."""
    return _profile(root, tuple(zoo_dirs))


def same_runtime_class(a: Mapping[str, RuntimeValue], b: Mapping[str, RuntimeValue]) -> bool:
    """True when two runtime claims promise identical bytes: one class, batch-invariant."""
    strip_a = {k: v for k, v in a.items() if k not in _PER_RUN_KEYS}
    strip_b = {k: v for k, v in b.items() if k not in _PER_RUN_KEYS}
    return strip_a == strip_b and a.get("batch_invariant") is True


Runtime = Mapping[str, RuntimeValue]


# The manifests' tolerances were measured on CPU; across devices (or dtypes, or torch
# versions) a disagreement may be the hardware's. A verdict across runtime classes
# therefore needs a gross gap, this many tolerances: a perturbed or lazy answer is
# thousands of tolerances away, honest hardware noise a few at most.
GROSS_FACTOR = 100.0
_CLASS_KEYS = ("device", "dtype", "torch", "cuda")


def same_device_class(a: Runtime, b: Runtime) -> bool:
    """True when two runtime claims name one device, dtype, torch and CUDA version."""
    return all(a.get(k) == b.get(k) for k in _CLASS_KEYS)


def convicts(found: Comparison, accused: Runtime, others: Sequence[Runtime]) -> bool:
    """Whether a disagreement proves the accused wrong, not merely another machine.

    Within the runtime class of one of ``others`` any disagreement does; across
    classes only one over ``GROSS_FACTOR`` tolerances does.
    """
    if found.agree:
        return False
    if any(same_device_class(accused, other) for other in others):
        return True
    return found.ratio > GROSS_FACTOR


def compare_results(
    profile: Profile,
    a: tuple[Values, Runtime],
    b: tuple[Values, Runtime],
) -> Comparison:
    """Whether results ``a`` and ``b`` of one task agree (see the table).

    Each result is its outputs and the runtime claim of its receipt.
    """
    (out_a, rec_a), (out_b, rec_b) = a, b
    if profile.kind == "generate":
        return _compare_generations(out_a, rec_a, out_b, rec_b)
    if profile.kind == "unknown" or profile.manifest is None:
        same = values_hash(out_a) == values_hash(out_b)
        return Comparison(same, True, 0.0 if same else math.inf, _exact_detail(same))
    if set(out_a) != set(out_b):
        return Comparison(False, True, math.inf, "the results name different outputs")
    tolerance = profile.tolerance(_dtype(rec_a), _dtype(rec_b))
    eps = tolerance.output_abs if tolerance is not None else 0.0
    worst = 0.0
    for name in sorted(out_a):
        found = _compare_value(profile.kind, name, out_a[name], out_b[name], eps)
        if not found.agree:
            return found
        worst = max(worst, found.distance)
    return Comparison(True, True, worst, f"within tolerance (eps={eps:g}, distance {worst:.3g})")


def _dtype(runtime: Runtime) -> str:
    value = runtime.get("dtype")
    return value if isinstance(value, str) else ""


def _exact_detail(same: bool) -> str:
    return "identical outputs" if same else "the outputs differ (exact comparison)"


def _compare_generations(
    out_a: Values, rec_a: Runtime, out_b: Values, rec_b: Runtime
) -> Comparison:
    same = out_a.get("token_ids") == out_b.get("token_ids") and out_a.get("text") == out_b.get(
        "text"
    )
    if same_runtime_class(rec_a, rec_b):
        detail = "identical tokens" if same else "different tokens in one runtime class"
        return Comparison(same, True, 0.0 if same else math.inf, detail)
    return Comparison(False, False, 0.0 if same else math.inf, "two runtime classes: check")


def _compare_value(
    kind: str, name: str, a: Tensor | list[str], b: Tensor | list[str], eps: float
) -> Comparison:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        same = a == b
        return Comparison(same, True, 0.0 if same else math.inf, f"{name}: {_exact_detail(same)}")
    if a.shape != b.shape:
        return Comparison(False, True, math.inf, f"{name}: shapes {a.shape} and {b.shape}")
    if a.dtype not in FLOAT_DTYPES or b.dtype not in FLOAT_DTYPES:
        same = a == b
        return Comparison(same, True, 0.0 if same else math.inf, f"{name}: {_exact_detail(same)}")
    x, y = _floats(a), _floats(b)
    if kind == "embed":
        return _compare_embeddings(name, x, y, eps)
    return _compare_logits(name, x, y, eps)


def _floats(tensor: Tensor) -> Any:
    import numpy as np

    if tensor.dtype == "bfloat16":
        halves = np.frombuffer(tensor.data, dtype="<u2").astype(np.uint32) << 16
        array = halves.view(np.float32)
    else:
        array = tensor.to_numpy()
    return np.asarray(array, dtype=np.float64).reshape(tensor.shape)


def _rows(array: Any) -> Any:
    return array.reshape(-1, array.shape[-1]) if array.ndim >= 1 and array.size else array


def _compare_logits(name: str, x: Any, y: Any, eps: float) -> Comparison:
    import numpy as np

    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return Comparison(False, True, math.inf, f"{name}: not finite")
    if x.size == 0:
        return Comparison(True, True, 0.0, f"{name}: empty")
    diff = float(np.abs(x - y).max())
    if diff > eps:
        detail = f"{name}: differs by {diff:.3g} (tolerance {eps:g})"
        return Comparison(False, True, diff, detail, diff / eps if eps > 0 else math.inf)
    rx, ry = _rows(x), _rows(y)
    for row, (u, v) in enumerate(zip(rx, ry, strict=True)):
        if u.size < 2 or int(u.argmax()) == int(v.argmax()):
            continue
        best = np.sort(u)[-2:]
        if float(best[1] - best[0]) > 2 * eps:
            detail = f"{name}: row {row} has another argmax"
            return Comparison(False, True, diff, detail, diff / eps if eps > 0 else math.inf)
    return Comparison(True, True, diff, f"{name}: within {eps:g}")


def _compare_embeddings(name: str, x: Any, y: Any, eps: float) -> Comparison:
    import numpy as np

    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return Comparison(False, True, math.inf, f"{name}: not finite")
    worst = 0.0
    for row, (u, v) in enumerate(zip(_rows(x), _rows(y), strict=True)):
        d = u.size
        nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
        if abs(nu - nv) > eps * math.sqrt(d):
            gap = abs(nu - nv)
            ratio = gap / (eps * math.sqrt(d)) if eps > 0 else math.inf
            return Comparison(False, True, gap, f"{name}: row {row} norms differ", ratio)
        if nu == 0.0 or nv == 0.0:
            if nu == nv:
                continue  # both zero vectors: equal within any tolerance
            return Comparison(False, True, math.inf, f"{name}: row {row} is a zero vector")
        cosine = float(np.dot(u, v)) / (nu * nv)
        bound = 1.0 - d * eps * eps / (2.0 * nu * nv)
        worst = max(worst, 1.0 - cosine)
        if cosine < bound:
            # 1 - cos grows with the square of the per-element gap: the root keeps the
            # ratio in tolerances of one element, as for logits.
            allowed = d * eps * eps / (2.0 * nu * nv)
            ratio = math.sqrt((1.0 - cosine) / allowed) if allowed > 0 else math.inf
            detail = f"{name}: row {row} cosine {cosine:.6f} < {bound:.6f}"
            return Comparison(False, True, 1.0 - cosine, detail, ratio)
    return Comparison(True, True, worst, f"{name}: cosines within the bound")
