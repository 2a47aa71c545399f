"""Canonical MessagePack: one byte string per value, and a strict decoder.

Rules (see ARCHITECTURE.md, Decisions/Encoding):
- maps have string keys, sorted by their UTF-8 bytes, no duplicates;
- integers in their shortest form; bytes as ``bin``; strings as ``str``;
- no floats, no ext types, no ``nil`` inside signed parts unless a schema allows it;
- nothing after the value.

Decoding is *verify by re-encoding*: after a bounded ``msgpack.unpackb`` the value
is encoded again and must give the received bytes exactly. That one check
rejects non-minimal integers, unsorted keys, str/bin confusion and the other
ways msgpack lets one value have several encodings.
"""

from __future__ import annotations

from typing import Any

import msgpack

from mesh.core import limits
from mesh.errors import MalformedMessage, TooLarge

Value = Any  # None | bool | int | str | bytes | list[Value] | dict[str, Value]

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
# Our messages nest about five levels deep (request > inputs > tensor > shape).
# Without a cap, a few kB of nested arrays exhaust Python's recursion limit when
# re-encoding (a RecursionError instead of a typed error).
MAX_DEPTH = 32


def encode(value: Value) -> bytes:
    """Encode ``value`` canonically. Raises MalformedMessage on an unencodable value."""
    try:
        packed: bytes = msgpack.packb(_canonical_form(value, 0), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedMessage(f"cannot encode: {exc}") from exc
    return packed


def _canonical_form(value: Value, depth: int) -> Value:
    # Rebuild maps with sorted keys; reject the types the wire does not allow.
    if depth > MAX_DEPTH:
        raise MalformedMessage(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise MalformedMessage(f"map key {key!r} is not a string")
        return {k: _canonical_form(value[k], depth + 1) for k in sorted(value, key=_key_order)}
    if isinstance(value, (list, tuple)):
        return [_canonical_form(v, depth + 1) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise MalformedMessage(f"integer {value} out of range")
        return value
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise MalformedMessage(f"type {type(value).__name__} is not allowed on the wire")


def _key_order(key: str) -> bytes:
    return key.encode("utf-8")


def decode(data: bytes, *, max_bytes: int = limits.MAX_MESSAGE_BYTES) -> Value:
    """Decode canonical MessagePack ``data``.

    Raises:
        TooLarge: ``data`` is longer than ``max_bytes``.
        MalformedMessage: not MessagePack, trailing bytes, floats, ext types,
            non-string or duplicate map keys, or any non-canonical encoding.
    """
    if len(data) > max_bytes:
        raise TooLarge(f"message of {len(data)} bytes exceeds cap of {max_bytes}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_pairs_to_dict,
            ext_hook=_reject_ext,
            max_str_len=min(max_bytes, limits.MAX_TENSOR_BYTES),
            max_bin_len=min(max_bytes, limits.MAX_TENSOR_BYTES),
            max_array_len=limits.MAX_LIST_ITEMS,
            max_map_len=limits.MAX_MAP_ITEMS,
            max_ext_len=0,
        )
    except MalformedMessage:
        raise
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedMessage(f"not canonical msgpack: {exc}") from exc
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        # unpackb raises ValueError for truncated data and exceeded length caps.
        raise MalformedMessage(f"undecodable msgpack: {exc}") from exc
    _check_tree(value)
    # Map order was checked while decoding and no floats remain, so packing the
    # value as-is yields the canonical bytes; any other difference (integer width,
    # str/bin type, length prefixes) shows up in the comparison.
    if msgpack.packb(value, use_bin_type=True) != bytes(data):
        raise MalformedMessage("non-canonical encoding")
    return value


def _pairs_to_dict(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    # Keys must arrive strictly increasing in UTF-8 byte order: that rejects
    # duplicates and unsorted maps here, and lets decode() re-pack the value
    # without rebuilding sorted maps.
    result: dict[str, Any] = {}
    previous = b""
    for index, (key, val) in enumerate(pairs):
        if not isinstance(key, str):
            raise MalformedMessage("map key is not a string")
        encoded = key.encode("utf-8")
        if index and encoded <= previous:
            if encoded == previous:
                raise MalformedMessage(f"duplicate map key {key[:40]!r}")
            raise MalformedMessage("map keys are not in canonical order")
        previous = encoded
        result[key] = val
    return result


def _reject_ext(code: int, data: bytes) -> Any:
    raise MalformedMessage(f"ext type {code} is not allowed")


def _check_tree(value: Value) -> None:
    # Iterative, so that depth is checked before anything recurses.
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float):
            raise MalformedMessage("floats are not allowed")
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise MalformedMessage(f"nested deeper than {MAX_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
