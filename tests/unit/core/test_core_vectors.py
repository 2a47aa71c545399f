"""Known-answer vectors: fixed seed -> exact encoded bytes -> exact signature, per kind."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mesh.core import canonical, open_signed
from mesh.core.identity import Identity, verify_signature
from mesh.core.messages import CapacityRecord, Receipt, Task, Verdict

pytestmark = pytest.mark.unit

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
KINDS = {"task": Task, "receipt": Receipt, "capacity": CapacityRecord, "verdict": Verdict}


def _load_maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(KINDS))
def test_checked_in_vector_verifies_on_its_own(name: str) -> None:
    v = _vector(name)
    identity = Identity.from_seed(bytes.fromhex(v["seed"]))
    assert identity.public_key.hex() == v["public_key"]
    assert identity.peer_id == v["peer_id"]
    body = bytes.fromhex(v["body"])
    expected_pae = b"MESHv1 %d %s %d " % (len(v["type"]), v["type"].encode(), len(body)) + body
    assert bytes.fromhex(v["pae"]) == expected_pae
    sig = bytes.fromhex(v["signature"])
    verify_signature(identity.public_key, expected_pae, sig)  # raises BadSignature if not
    assert identity.sign(expected_pae) == sig  # Ed25519 is deterministic
    envelope = bytes.fromhex(v["envelope"])
    assert envelope == canonical.encode(
        {"body": body, "key": identity.public_key, "sig": sig, "type": v["type"]}
    )
    assert hashlib.sha256(envelope).hexdigest() == v["digest"]
    signed = open_signed(envelope, KINDS[name])
    assert canonical.encode(signed.message.to_wire()) == body


@pytest.mark.parametrize("name", sorted(KINDS))
def test_rebuilding_gives_the_same_bytes(name: str) -> None:
    rebuilt = _load_maker().build_vectors()[name]
    assert rebuilt == _vector(name)


def test_model_root_vector() -> None:
    assert _load_maker().build_vectors()["model_root"] == _vector("model_root")


def test_receipt_is_compact() -> None:
    assert _vector("receipt")["envelope_bytes"] < 1024
