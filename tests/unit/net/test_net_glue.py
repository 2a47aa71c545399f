"""Sans-IO pieces of the libp2p adapter: stream pool, record validator glue, imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mesh.errors import BadSignature
from mesh.net.dht import MeshRecordValidator, RecordRejected
from mesh.net.streams import StreamPool

pytestmark = pytest.mark.unit


class FakeStream:
    def __init__(self, name: str) -> None:
        self.name = name


def test_pool_reuses_the_freshest_and_bounds_idle_streams() -> None:
    pool = StreamPool(max_idle=2, idle_s=30.0)
    a, b, c = FakeStream("a"), FakeStream("b"), FakeStream("c")
    assert pool.take("p", "/x", now=0.0) is None
    assert pool.give_back("p", "/x", a, now=0.0)  # type: ignore[arg-type]
    assert pool.give_back("p", "/x", b, now=1.0)  # type: ignore[arg-type]
    assert not pool.give_back("p", "/x", c, now=2.0)  # type: ignore[arg-type]
    assert pool.take("p", "/y", now=2.0) is None  # per protocol
    assert pool.take("p", "/x", now=2.0) is b
    assert pool.take("p", "/x", now=2.0) is a
    assert pool.take("p", "/x", now=2.0) is None


def test_pool_hands_back_stale_streams_for_closing() -> None:
    pool = StreamPool(idle_s=30.0)
    old, new = FakeStream("old"), FakeStream("new")
    pool.give_back("p", "/x", old, now=0.0)  # type: ignore[arg-type]
    pool.give_back("q", "/x", new, now=40.0)  # type: ignore[arg-type]
    assert pool.stale(now=45.0) == [old]
    assert pool.take("p", "/x", now=45.0) is None
    assert pool.drop_peer("q") == [new]
    assert pool.drain() == []


def _check(key: str, value: bytes) -> None:
    if not value.startswith(b"ok"):
        raise BadSignature("forged")


def test_validator_translates_mesh_errors_for_the_library() -> None:
    validator = MeshRecordValidator(_check)
    validator.validate("/mesh-cap/x", b"ok")
    with pytest.raises(RecordRejected) as info:
        validator.validate("/mesh-cap/x", b"bad")
    assert isinstance(info.value.__cause__, BadSignature)
    with pytest.raises(BadSignature):
        validator.check("/mesh-cap/x", b"bad")


def test_select_never_picks_an_invalid_value() -> None:
    plain = MeshRecordValidator(_check)
    assert plain.select("/k/x", [b"bad", b"ok1", b"ok2"]) == 1

    def by_length(values: list[bytes]) -> int:
        return max(range(len(values)), key=lambda i: len(values[i]))

    longest = MeshRecordValidator(_check, by_length)
    assert longest.select("/k/x", [b"ok", b"bad-but-long", b"ok-long"]) == 2
    broken = MeshRecordValidator(_check, lambda values: 7)
    assert broken.select("/k/x", [b"bad", b"ok"]) == 1


def test_the_interface_does_not_import_libp2p() -> None:
    code = (
        "import sys, mesh.net.interface, mesh.net.health, mesh.net.bootstrap;"
        "print('libp2p' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
