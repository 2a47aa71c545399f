"""Tensor <-> numpy: exact round trips, byte order, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from mesh.core.tensors import Tensor
from mesh.errors import MalformedMessage, TooLarge

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int64", "int8", "bool"])
def test_round_trip_is_exact(dtype: str) -> None:
    rng = np.random.default_rng(3)
    array = (rng.standard_normal((3, 5)) * 10).astype(dtype)
    tensor = Tensor.from_numpy(array)
    assert tensor.dtype == dtype and tensor.shape == (3, 5)
    back = tensor.to_numpy()
    assert back.dtype == array.dtype and np.array_equal(back, array)


def test_big_endian_and_strided_arrays_become_little_endian_c_order() -> None:
    array = np.arange(12, dtype=">i4").reshape(3, 4).T  # big-endian, transposed
    tensor = Tensor.from_numpy(array)
    assert tensor.shape == (4, 3)
    assert tensor.data == np.ascontiguousarray(array, dtype="<i4").tobytes()
    assert np.array_equal(tensor.to_numpy(), array)


def test_unsupported_dtype_is_refused() -> None:
    with pytest.raises(MalformedMessage):
        Tensor.from_numpy(np.zeros(3, dtype=np.complex64))


def test_bfloat16_has_no_numpy_view() -> None:
    with pytest.raises(MalformedMessage):
        Tensor("bfloat16", (2,), bytes(4)).to_numpy()


def test_caps_apply_to_numpy_input() -> None:
    with pytest.raises(TooLarge):
        Tensor.from_numpy(np.zeros((17 * 1024 * 1024,), dtype=np.uint8))
