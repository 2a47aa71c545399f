"""Dishonest workers for researchers: a node that signs wrong answers on purpose.

``NodeConfig(lie=...)`` (``mesh testnet --liars K --lie KIND``) makes the node
one of these; its receipts stay valid signatures over what it answered, which
is exactly the attack verification must catch:

============  ===================================================================
``perturb``   runs the model, then alters every answer before the receipt is
              signed: float outputs become ``0.5 - x`` (another argmax, another
              embedding direction), token ids ``t ^ 1``, texts reversed, check
              answers inverted (so it also lies when asked to check others)
``rate:F``    ``perturb`` on a random fraction F of answers (0 < F <= 1), each
              answer drawn independently
``lazy``      never runs the model: answers at once with outputs of the right
              shape (zeros; a generation of ``max_tokens`` zero ids and no
              commitment), answers every check "pass" without checking, and
              advertises an empty queue so load-aware clients prefer it
============  ===================================================================

Kinds are parsed by :func:`parse_lie`; the node wraps its runner with
:func:`apply_lie` and its advertised queue depth with :func:`advertised_depth`.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mesh.core.checks import ANSWER, FAIL, PASS, REASON, check_answer, is_check
from mesh.core.partials import token_list
from mesh.core.tensors import DTYPE_SIZES, Tensor
from mesh.core.values import Values
from mesh.errors import ConfigError, ModelError
from mesh.node.runner import ExecutionLike, TaskRunner, TokenHook, WrappedRunner

KINDS = ("perturb", "lazy")
# Lazy answers claim what an honest CPU run of the manifest's dtype would.
_LAZY_DEVICE = "cpu"
_DEFAULT_LAZY_TOKENS = 16


@dataclass(frozen=True, slots=True)
class Lie:
    """How a node lies: ``kind`` on a fraction ``rate`` of its answers."""

    kind: str
    rate: float = 1.0


def parse_lie(text: str) -> Lie | None:
    """``""`` (honest: None), ``perturb``, ``lazy`` or ``rate:F``.

    Raises:
        ConfigError: anything else, or F outside (0, 1].
    """
    if not text:
        return None
    if text in KINDS:
        return Lie(text)
    name, sep, value = text.partition(":")
    if name == "rate" and sep:
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if 0.0 < rate <= 1.0:
            return Lie("perturb", rate)
    raise ConfigError(f"lie must be perturb, lazy or rate:F with 0 < F <= 1, not {text!r}")


@dataclass(frozen=True)
class _Answer:
    outputs: Values
    runtime: dict[str, str | int | bool]
    commitment: bytes
    batch_size: int
    compute_ms: float


class LyingRunner(WrappedRunner):
    """A :class:`~mesh.node.runner.TaskRunner` that lies as ``lie`` says (see the module).

    A liar still refuses bad input (``validate`` is the model's).
    """

    def __init__(self, inner: TaskRunner, lie: Lie, *, rng: random.Random | None = None) -> None:
        super().__init__(inner)
        self._lie = lie
        self._rng = rng or random.Random()
        self.lied = 0  # answers altered or faked so far

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: TokenHook | None = None,
    ) -> ExecutionLike:
        if self._lie.kind == "lazy":
            if on_start is not None:
                on_start()
            self.lied += 1
            answer = self._lazy(model_root, inputs, params)
            if on_tokens is not None:
                # A consistent liar: it streams what it will claim.
                ids, texts = answer.outputs.get("token_ids"), answer.outputs.get("text")
                on_tokens(
                    token_list(ids) if isinstance(ids, Tensor) else [],
                    texts[0] if isinstance(texts, list) and texts else "",
                )
            return answer
        # A perturbing liar streams the true tokens and then claims others: a
        # streaming client's own check catches that (mesh.core.partials).
        execution = await self._inner.run(
            model_root, inputs, params, on_start=on_start, on_tokens=on_tokens
        )
        if self._rng.random() >= self._lie.rate:
            return execution
        self.lied += 1
        return _Answer(
            perturb_outputs(execution.outputs),
            dict(execution.runtime),
            execution.commitment,
            execution.batch_size,
            execution.compute_ms,
        )

    def _lazy(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> _Answer:
        outputs = (
            check_answer(True)
            if is_check(inputs)
            else lazy_outputs(self.models.get(model_root, ""), inputs, params)
        )
        runtime: dict[str, str | int | bool] = {
            "device": _LAZY_DEVICE,
            "dtype": _manifest_dtype(self.models.get(model_root, "")),
            "batch_size": 1,
        }
        return _Answer(outputs, runtime, b"", 1, 0.0)

    def runtime_class(self, model_root: bytes) -> dict[str, str | int | bool]:
        if self._lie.kind == "lazy":
            return {
                "device": _LAZY_DEVICE,
                "dtype": _manifest_dtype(self.models.get(model_root, "")),
            }
        return self._inner.runtime_class(model_root)


def apply_lie(runner: TaskRunner, lie: str) -> TaskRunner:
    """``runner`` itself for an honest node, else wrapped in a :class:`LyingRunner`."""
    parsed = parse_lie(lie)
    return runner if parsed is None else LyingRunner(runner, parsed)


def advertised_depth(lie: str, real: Callable[[], int]) -> Callable[[], int]:
    """The queue depth a node advertises: a lazy node claims an empty queue."""
    parsed = parse_lie(lie)
    if parsed is not None and parsed.kind == "lazy":
        return lambda: 0
    return real


def perturb_outputs(outputs: Values) -> Values:
    """Every output altered so that no tolerance accepts it (see the module table)."""
    if ANSWER in outputs and REASON in outputs:
        answer = outputs[ANSWER]
        flipped = FAIL if answer == [PASS] else PASS
        return {ANSWER: [flipped], REASON: ["" if flipped == PASS else "perturbed"]}
    return {name: _perturb(value) for name, value in outputs.items()}


def _perturb(value: Tensor | list[str]) -> Tensor | list[str]:
    if not isinstance(value, Tensor):
        return [text[::-1] + "~" for text in value]
    if value.dtype in ("float32", "float64", "float16"):
        import numpy as np

        array = value.to_numpy()
        return Tensor.from_numpy((0.5 - array.astype(np.float64)).astype(array.dtype))
    if value.dtype == "bfloat16":  # no numpy dtype: flip the sign bit of each element
        halves = struct.unpack(f"<{value.numel}H", value.data)
        flipped = struct.pack(f"<{value.numel}H", *(h ^ 0x8000 for h in halves))
        return Tensor(value.dtype, value.shape, flipped)
    size = DTYPE_SIZES[value.dtype]
    data = bytes(b ^ 1 if i % size == 0 else b for i, b in enumerate(value.data))
    return Tensor(value.dtype, value.shape, data)


def lazy_outputs(model_name: str, inputs: Values, params: Mapping[str, int]) -> Values:
    """Outputs of the right names and shapes with no model run: zeros, or an empty generation."""
    try:
        from mesh.runtime.zoo import find_manifest

        manifest = find_manifest(model_name)
    except ModelError:
        return {}
    if manifest.kind == "generate":
        count = int(params.get("max_tokens", _DEFAULT_LAZY_TOKENS))
        zeros = Tensor("int64", (count,), bytes(8 * count))
        return {"text": ["\x00" * count], "token_ids": zeros}
    rows = _rows(inputs)
    outputs: Values = {}
    for name, spec in manifest.outputs.items():
        if spec.dtype == "str":
            outputs[name] = [""] * rows
            continue
        shape = tuple(rows if d == -1 else d for d in spec.shape)
        count = 1
        for d in shape:
            count *= d
        outputs[name] = Tensor(spec.dtype, shape, bytes(DTYPE_SIZES[spec.dtype] * count))
    return outputs


def _rows(inputs: Values) -> int:
    for value in inputs.values():
        if isinstance(value, Tensor):
            return value.shape[0] if value.shape else 1
        return len(value)
    return 1


def _manifest_dtype(model_name: str) -> str:
    try:
        from mesh.runtime.zoo import find_manifest

        return find_manifest(model_name).dtype
    except ModelError:
        return "float32"
