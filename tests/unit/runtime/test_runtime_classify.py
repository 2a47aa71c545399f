"""tiny-mlp: schema checks and batch invariance."""

from __future__ import annotations

import math

import pytest
import torch
from runtime_models import loaded

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.convert import from_torch, to_torch

pytestmark = pytest.mark.unit


def _x(rows: int, seed: int = 0) -> Tensor:
    return from_torch(torch.randn(rows, 32, generator=torch.Generator().manual_seed(seed)))


def test_rows_do_not_depend_on_their_batch() -> None:
    model = loaded("tiny-mlp")
    (alone,) = model.run_batch([({"x": _x(1, 5)}, {})])
    outs = model.run_batch([({"x": _x(7, 1)}, {}), ({"x": _x(1, 5)}, {}), ({"x": _x(20, 2)}, {})])
    assert outs[1] == alone
    logits = outs[2].outputs["logits"]
    assert isinstance(logits, Tensor) and logits.shape == (20, 10)


def test_same_in_bfloat16_within_the_manifest_tolerance() -> None:
    x = _x(16, 3)
    (ref,) = loaded("tiny-mlp").run_batch([({"x": x}, {})])
    (low,) = loaded("tiny-mlp", "bfloat16").run_batch([({"x": x}, {})])
    a, b = ref.outputs["logits"], low.outputs["logits"]
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    tol = loaded("tiny-mlp").manifest.tolerance("float32", "bfloat16").output_abs
    diff = float((to_torch(a) - to_torch(b)).abs().max())
    assert 0 < diff <= tol


@pytest.mark.parametrize(
    ("inputs", "params", "match"),
    [
        ({"x": from_torch(torch.zeros(2, 31))}, {}, "shape"),
        ({"x": from_torch(torch.zeros(2, 32, dtype=torch.float64))}, {}, "float32"),
        ({"x": from_torch(torch.zeros(65, 32))}, {}, "at most 64"),
        ({"x": from_torch(torch.full((1, 32), math.nan))}, {}, "NaN"),
        ({"x": from_torch(torch.zeros(0, 32))}, {}, "empty"),
        ({"x": ["text"]}, {}, "tensor"),
        ({}, {}, "needs input 'x'"),
        ({"x": from_torch(torch.zeros(1, 32))}, {"seed": 1}, "no params"),
    ],
)
def test_bad_inputs_are_typed_errors(inputs: Values, params: dict[str, int], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        loaded("tiny-mlp").validate(inputs, params)
