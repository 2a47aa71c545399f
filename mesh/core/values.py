"""Task inputs and outputs: named tensors or lists of strings.

Wire form: a map from name to either a tensor map (:meth:`Tensor.to_wire`) or a
list of strings. Its hash, :func:`values_hash`, is the SHA-256 of the canonical
encoding of that map; a task signs the hash of its inputs and a receipt the hash
of its outputs, so the (possibly large) values travel beside the signed parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from mesh.core import canonical, limits
from mesh.core.tensors import Tensor
from mesh.errors import MalformedMessage, TooLarge

Values = dict[str, Tensor | list[str]]

# Names are identifiers such as "input_ids" or "text"; 128 bytes is generous.
MAX_VALUE_NAME_BYTES = 128


def values_to_wire(values: Mapping[str, Tensor | Sequence[str]]) -> dict[str, Any]:
    """The wire map of ``values``, checked against the caps.

    Raises:
        MalformedMessage: a name is not a non-empty string, or a value is neither a
            Tensor nor a list of strings.
        TooLarge: too many values, texts, or bytes in one text.
    """
    _check_count(len(values))
    wire: dict[str, Any] = {}
    for name, value in values.items():
        _check_name(name)
        if isinstance(value, Tensor):
            wire[name] = value.to_wire()
        elif isinstance(value, (list, tuple)):
            wire[name] = _check_texts(name, value)
        else:
            raise MalformedMessage(f"value {name!r} must be a Tensor or a list of strings")
    return wire


def values_from_wire(value: Any) -> Values:
    """Rebuild values from their decoded wire map. Raises MalformedMessage or TooLarge."""
    if not isinstance(value, dict):
        raise MalformedMessage("values must be a map")
    _check_count(len(value))
    result: Values = {}
    for name, item in value.items():
        _check_name(name)
        if isinstance(item, dict):
            result[name] = Tensor.from_wire(item)
        elif isinstance(item, list):
            result[name] = _check_texts(name, item)
        else:
            raise MalformedMessage(f"value {name!r} must be a tensor map or a list of strings")
    return result


def encode_values(values: Mapping[str, Tensor | Sequence[str]]) -> bytes:
    """Canonical MessagePack of the wire map of ``values``."""
    return canonical.encode(values_to_wire(values))


def decode_values(data: bytes) -> Values:
    """Strictly decode bytes written by :func:`encode_values`."""
    return values_from_wire(canonical.decode(data))


def values_hash(values: Mapping[str, Tensor | Sequence[str]]) -> bytes:
    """SHA-256 of the canonical encoding of ``values``' wire map."""
    return hashlib.sha256(encode_values(values)).digest()


def _check_count(count: int) -> None:
    if count > limits.MAX_TENSORS_PER_MESSAGE:
        raise TooLarge(f"{count} values, cap is {limits.MAX_TENSORS_PER_MESSAGE}")


def _check_name(name: Any) -> None:
    if type(name) is not str or not name:
        raise MalformedMessage("value names must be non-empty strings")
    if len(name.encode("utf-8")) > MAX_VALUE_NAME_BYTES:
        raise TooLarge(f"value name longer than {MAX_VALUE_NAME_BYTES} bytes")


def _check_texts(name: str, texts: Sequence[Any]) -> list[str]:
    if len(texts) > limits.MAX_TEXTS_PER_TASK:
        raise TooLarge(f"value {name!r} has {len(texts)} texts, cap is {limits.MAX_TEXTS_PER_TASK}")
    for text in texts:
        if type(text) is not str:
            raise MalformedMessage(f"value {name!r} must hold only strings")
        if len(text) * 4 > limits.MAX_STRING_BYTES and (
            len(text.encode("utf-8")) > limits.MAX_STRING_BYTES
        ):
            raise TooLarge(f"a text in {name!r} exceeds {limits.MAX_STRING_BYTES} bytes")
    return list(texts)
