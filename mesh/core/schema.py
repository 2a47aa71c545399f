"""Declare a message's wire fields once, in its type annotations.

A message is a frozen dataclass whose fields are annotated with
``Annotated[python_type, Kind]``: the ``Kind`` says how the field is checked and
put on the wire. :class:`WireMessage` derives ``to_wire``/``from_wire`` from them,
so no message class repeats its field list::

    @dataclass(frozen=True, slots=True)
    class Ping(WireMessage):
        peer: Annotated[bytes, Bytes(32)]
        count: Annotated[int, Int(0, 10)]

Construction validates and normalizes every field (lists become tuples), so an
invalid message cannot exist; ``from_wire`` additionally rejects unknown and
missing keys. Errors are :class:`~mesh.errors.MalformedMessage` for wrong shapes
and :class:`~mesh.errors.TooLarge` for values over a cap.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from mesh.errors import MalformedMessage, TooLarge

U63 = 2**63 - 1  # times, counters and sizes: non-negative and fit an int64
I64_MIN = -(2**63)
U64_MAX = 2**64 - 1  # the widest integer canonical msgpack carries


class Kind:
    """How one field is checked and encoded. Subclasses override both methods."""

    def coerce(self, name: str, value: Any) -> Any:
        """Return ``value`` checked and normalized, or raise a typed error."""
        raise NotImplementedError

    def to_wire(self, value: Any) -> Any:
        """The wire form of a value already accepted by :meth:`coerce`."""
        return value


class Bytes(Kind):
    """A byte string whose length lies in ``[min_len, max_len]``."""

    def __init__(self, min_len: int, max_len: int | None = None) -> None:
        self.min_len = min_len
        self.max_len = min_len if max_len is None else max_len

    def coerce(self, name: str, value: Any) -> Any:
        if not isinstance(value, bytes):
            raise MalformedMessage(f"field {name!r} must be bytes")
        if len(value) > self.max_len:
            if self.max_len > self.min_len:
                raise TooLarge(f"field {name!r} has {len(value)} bytes, cap is {self.max_len}")
            raise MalformedMessage(f"field {name!r} must be {self.min_len} bytes")
        if len(value) < self.min_len:
            raise MalformedMessage(f"field {name!r} is shorter than {self.min_len} bytes")
        return value


class OneOfBytes(Kind):
    """A byte string whose length is one of a few exact values (for example 0 or 32)."""

    def __init__(self, *lengths: int) -> None:
        self.lengths = frozenset(lengths)

    def coerce(self, name: str, value: Any) -> Any:
        if not isinstance(value, bytes) or len(value) not in self.lengths:
            allowed = " or ".join(str(n) for n in sorted(self.lengths))
            raise MalformedMessage(f"field {name!r} must be bytes of length {allowed}")
        return value


class Int(Kind):
    """An integer (never a bool) in ``[lo, hi]``."""

    def __init__(self, lo: int = 0, hi: int = U63) -> None:
        self.lo = lo
        self.hi = hi

    def coerce(self, name: str, value: Any) -> Any:
        if type(value) is not int:  # bool is an int subclass; the wire keeps them apart
            raise MalformedMessage(f"field {name!r} must be an integer")
        if not self.lo <= value <= self.hi:
            raise MalformedMessage(f"field {name!r} = {value} is outside [{self.lo}, {self.hi}]")
        return value


class Bool(Kind):
    """``True`` or ``False``."""

    def coerce(self, name: str, value: Any) -> Any:
        if type(value) is not bool:
            raise MalformedMessage(f"field {name!r} must be a bool")
        return value


class Str(Kind):
    """A string of at most ``max_bytes`` UTF-8 bytes, optionally from a fixed set."""

    def __init__(self, max_bytes: int, *, choices: tuple[str, ...] = ()) -> None:
        self.max_bytes = max_bytes
        self.choices = frozenset(choices)

    def coerce(self, name: str, value: Any) -> Any:
        if type(value) is not str:
            raise MalformedMessage(f"field {name!r} must be a string")
        if self.choices and value not in self.choices:
            raise MalformedMessage(
                f"field {name!r} = {value[:40]!r} is not one of {sorted(self.choices)}"
            )
        # len(str) <= UTF-8 length <= 4 * len(str): only encode when it matters.
        if len(value) * 4 > self.max_bytes and len(value.encode("utf-8")) > self.max_bytes:
            raise TooLarge(f"field {name!r} is longer than {self.max_bytes} bytes")
        return value


class List(Kind):
    """A list of at most ``max_items`` items of one kind; held as a tuple."""

    def __init__(self, item: Kind, max_items: int) -> None:
        self.item = item
        self.max_items = max_items

    def coerce(self, name: str, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise MalformedMessage(f"field {name!r} must be a list")
        if len(value) > self.max_items:
            raise TooLarge(f"field {name!r} has {len(value)} items, cap is {self.max_items}")
        return tuple(self.item.coerce(name, v) for v in value)

    def to_wire(self, value: Any) -> Any:
        return [self.item.to_wire(v) for v in value]


class AnyOf(Kind):
    """One of several scalar kinds, chosen by the value's exact Python type.

    Dispatching on ``type(value)`` (rather than trying each kind in turn) keeps
    bool and int apart and avoids raising an exception per candidate.
    """

    def __init__(self, *kinds: Bool | Int | Str) -> None:
        self.kinds: dict[type, Kind] = {}
        for kind in kinds:
            self.kinds[_PYTHON_TYPES[type(kind)]] = kind

    def coerce(self, name: str, value: Any) -> Any:
        kind = self.kinds.get(type(value))
        if kind is None:
            raise MalformedMessage(f"field {name!r} has a value of the wrong type")
        return kind.coerce(name, value)


_PYTHON_TYPES: dict[type, type] = {Bool: bool, Int: int, Str: str}


class Map(Kind):
    """A map of string keys (at most ``max_key_bytes``) to values of one kind."""

    def __init__(self, value: Kind, *, max_items: int, max_key_bytes: int) -> None:
        self.value = value
        self.max_items = max_items
        self.key = Str(max_key_bytes)

    def coerce(self, name: str, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise MalformedMessage(f"field {name!r} must be a map")
        if len(value) > self.max_items:
            raise TooLarge(f"field {name!r} has {len(value)} entries, cap is {self.max_items}")
        return {
            self.key.coerce(f"{name} key", k): self.value.coerce(f"{name}.{k}", v)
            for k, v in value.items()
        }

    def to_wire(self, value: Any) -> Any:
        return {k: self.value.to_wire(v) for k, v in value.items()}


class WireMessage:
    """Base of frozen dataclass messages whose fields carry a :class:`Kind`.

    Subclasses may set ``WIRE_CONSTANTS``: extra keys with fixed values that are
    written by ``to_wire`` and required by ``from_wire`` (``{"kind": "error"}``).
    """

    __slots__ = ()
    WIRE_CONSTANTS: ClassVar[Mapping[str, Any]] = {}
    _schema_cache: ClassVar[dict[type, tuple[tuple[str, Kind], ...]]] = {}

    @classmethod
    def schema(cls) -> tuple[tuple[str, Kind], ...]:
        """The ``(field name, Kind)`` pairs of this class, in declaration order."""
        cached = WireMessage._schema_cache.get(cls)
        if cached is None:
            # Resolved lazily: annotations are strings until the module is loaded.
            hints = typing.get_type_hints(cls, include_extras=True)
            pairs = []
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                kinds = [
                    m for m in getattr(hints[f.name], "__metadata__", ()) if isinstance(m, Kind)
                ]
                if len(kinds) != 1:
                    raise TypeError(f"{cls.__name__}.{f.name} needs exactly one Kind annotation")
                pairs.append((f.name, kinds[0]))
            cached = tuple(pairs)
            WireMessage._schema_cache[cls] = cached
        return cached

    def __post_init__(self) -> None:
        for name, kind in self.schema():
            object.__setattr__(self, name, kind.coerce(name, getattr(self, name)))

    def to_wire(self) -> dict[str, Any]:
        """The message as a map ready for :func:`mesh.core.canonical.encode`."""
        wire = {name: kind.to_wire(getattr(self, name)) for name, kind in self.schema()}
        wire.update(self.WIRE_CONSTANTS)
        return wire

    @classmethod
    def from_wire(cls, value: Any) -> Self:
        """Build from a decoded map, rejecting unknown, missing and mistyped fields."""
        if not isinstance(value, Mapping):
            raise MalformedMessage(f"{cls.__name__} must be a map")
        schema = cls.schema()
        expected = {name for name, _ in schema} | set(cls.WIRE_CONSTANTS)
        if value.keys() != expected:
            unknown = sorted(set(value) - expected)
            missing = sorted(expected - set(value))
            raise MalformedMessage(
                f"{cls.__name__}: unknown fields {unknown}, missing fields {missing}"
            )
        for key, constant in cls.WIRE_CONSTANTS.items():
            if value[key] != constant or type(value[key]) is not type(constant):
                raise MalformedMessage(f"{cls.__name__}: {key!r} must be {constant!r}")
        return cls(**{name: value[name] for name, _ in schema})
