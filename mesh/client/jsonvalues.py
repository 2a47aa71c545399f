"""Values to and from JSON-friendly Python: nested lists for tensors, lists of strings.

Used by ``mesh run`` (``--input JSON``, ``--json``) and handy in notebooks. No
numpy: tensors are (un)packed with :mod:`struct`, little-endian, C order.

JSON input form, per name: a list of strings (texts); a nested list of numbers
(a ``float32`` tensor); or ``{"dtype": "int64", "data": <nested list>}``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import MalformedMessage

_FORMATS = {
    "float32": "f",
    "float16": "e",
    "float64": "d",
    "int64": "q",
    "int32": "i",
    "int16": "h",
    "int8": "b",
    "uint8": "B",
    "bool": "?",
}


def tensor_from_nested(data: Any, *, dtype: str = "float32") -> Tensor:
    """Build a tensor from a (rectangular) nested list of numbers.

    Raises:
        MalformedMessage: ragged lists, non-numbers, or an unsupported dtype.
    """
    shape = _shape(data)
    flat = list(_flatten(data, len(shape)))
    if dtype == "bfloat16":
        words = [struct.unpack("<I", struct.pack("<f", float(x)))[0] >> 16 for x in flat]
        return Tensor(dtype, shape, struct.pack(f"<{len(words)}H", *words))
    fmt = _FORMATS.get(dtype)
    if fmt is None:
        raise MalformedMessage(f"unsupported dtype {dtype!r}")
    if dtype.startswith(("int", "uint")) and not all(
        isinstance(x, int) and not isinstance(x, bool) for x in flat
    ):
        raise MalformedMessage(f"{dtype} tensors need integers")
    try:
        return Tensor(dtype, shape, struct.pack(f"<{len(flat)}{fmt}", *flat))
    except struct.error as exc:
        raise MalformedMessage(f"cannot pack as {dtype}: {exc}") from exc


def tensor_to_nested(tensor: Tensor) -> Any:
    """The tensor's values as a nested list (a scalar for shape ``()``)."""
    count = tensor.numel
    if tensor.dtype == "bfloat16":
        words = struct.unpack(f"<{count}H", tensor.data)
        flat: list[Any] = [struct.unpack("<f", struct.pack("<I", w << 16))[0] for w in words]
    else:
        flat = list(struct.unpack(f"<{count}{_FORMATS[tensor.dtype]}", tensor.data))
    return _nest(flat, tensor.shape)


def values_from_json(obj: Any) -> Values:
    """Values from the JSON input form (see the module docstring)."""
    if not isinstance(obj, dict):
        raise MalformedMessage("inputs must be a JSON object of name -> value")
    values: Values = {}
    for name, item in obj.items():
        if isinstance(item, dict):
            values[name] = tensor_from_nested(item.get("data"), dtype=item.get("dtype", "float32"))
        elif isinstance(item, list) and item and all(isinstance(x, str) for x in item):
            values[name] = list(item)
        else:
            values[name] = tensor_from_nested(item)
    return values


def values_to_json(values: Mapping[str, Tensor | Sequence[str]]) -> dict[str, Any]:
    """Values as JSON: tensors as ``{"dtype", "shape", "data": nested list}``, texts as lists."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Tensor):
            out[name] = {
                "dtype": value.dtype,
                "shape": list(value.shape),
                "data": tensor_to_nested(value),
            }
        else:
            out[name] = list(value)
    return out


def _shape(data: Any) -> tuple[int, ...]:
    shape = []
    while isinstance(data, list):
        shape.append(len(data))
        if not data:
            break
        data = data[0]
    return tuple(shape)


def _flatten(data: Any, depth: int) -> Any:
    if depth == 0:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise MalformedMessage(f"not a number: {data!r}")
        yield data
        return
    if not isinstance(data, list):
        raise MalformedMessage("ragged nested list")
    for item in data:
        yield from _flatten(item, depth - 1)


def _nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]
