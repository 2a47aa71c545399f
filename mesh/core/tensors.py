"""Tensors on the wire: (dtype, shape, raw little-endian bytes), with caps.

The core never imports numpy or torch; the runtime converts. A tensor travels as
the canonical map ``{"dtype": str, "shape": [int, ...], "data": bin}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mesh.core import limits
from mesh.errors import MalformedMessage, TooLarge

if TYPE_CHECKING:
    import numpy as np

# Wire dtype name -> bytes per element. bfloat16 has no numpy dtype; the runtime
# maps it through torch.
DTYPE_SIZES: dict[str, int] = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}


@dataclass(frozen=True, slots=True)
class Tensor:
    """A dense tensor as raw little-endian bytes in C order."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        check_tensor(self.dtype, self.shape, len(self.data))

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def to_wire(self) -> dict[str, Any]:
        return {"data": self.data, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_numpy(cls, array: np.ndarray[Any, Any]) -> Tensor:
        """Copy a numpy array (any layout or byte order) into a wire tensor.

        Raises:
            MalformedMessage: a dtype the wire does not carry.
            TooLarge: over the element or byte caps.
        """
        import numpy as np

        name = str(array.dtype.name)
        if name not in DTYPE_SIZES or name == "bfloat16":
            raise MalformedMessage(f"numpy dtype {array.dtype} has no wire form")
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        return cls(name, tuple(int(d) for d in little.shape), little.tobytes())

    def to_numpy(self) -> np.ndarray[Any, Any]:
        """A read-only numpy view of the data (bfloat16 has no numpy dtype: use torch)."""
        import numpy as np

        if self.dtype == "bfloat16":
            raise MalformedMessage("bfloat16 has no numpy dtype; convert with torch")
        array = np.frombuffer(self.data, dtype=np.dtype(self.dtype).newbyteorder("<"))
        return array.reshape(self.shape)

    @classmethod
    def from_wire(cls, value: Any) -> Tensor:
        """Build from a decoded wire map. Raises MalformedMessage or TooLarge."""
        if not isinstance(value, dict) or set(value) != {"data", "dtype", "shape"}:
            raise MalformedMessage("tensor must be a map of exactly data, dtype, shape")
        dtype, shape, data = value["dtype"], value["shape"], value["data"]
        if not isinstance(dtype, str) or not isinstance(data, bytes):
            raise MalformedMessage("tensor dtype must be str and data bytes")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape
        ):
            raise MalformedMessage("tensor shape must be a list of integers")
        return cls(dtype, tuple(shape), data)


def check_tensor(dtype: str, shape: tuple[int, ...], nbytes: int) -> None:
    """Check a tensor's description against the caps and its byte length."""
    if dtype not in DTYPE_SIZES:
        raise MalformedMessage(f"unknown tensor dtype {dtype!r}")
    if len(shape) > limits.MAX_TENSOR_DIMS:
        raise TooLarge(f"tensor has {len(shape)} dims, cap is {limits.MAX_TENSOR_DIMS}")
    if any(d < 0 for d in shape):
        raise MalformedMessage("tensor shape has a negative dimension")
    numel = math.prod(shape)
    if numel > limits.MAX_TENSOR_ELEMENTS:
        raise TooLarge(f"tensor has {numel} elements, cap is {limits.MAX_TENSOR_ELEMENTS}")
    expected = numel * DTYPE_SIZES[dtype]
    if expected > limits.MAX_TENSOR_BYTES:
        raise TooLarge(f"tensor has {expected} bytes, cap is {limits.MAX_TENSOR_BYTES}")
    if nbytes != expected:
        raise MalformedMessage(f"tensor data is {nbytes} bytes, shape and dtype need {expected}")
