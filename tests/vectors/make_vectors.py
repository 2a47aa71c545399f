"""Generate the known-answer vectors of the core: fixed seed -> exact bytes -> exact signature.

Run ``python tests/vectors/make_vectors.py`` to (re)write ``tests/vectors/*.json``.
Only do that when the wire format changes on purpose: the vectors exist so that
an accidental change of encoding or signing shows up as a test failure
(``tests/unit/core/test_core_vectors.py`` rebuilds every vector from
:func:`build_vectors` and compares it with the checked-in files).

Each JSON file holds hex strings: the signer's seed and public key, its PeerID,
the body (canonical MessagePack of the fields), the PAE bytes, the signature, the
envelope and its SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mesh.core import (
    CapacityRecord,
    Identity,
    Receipt,
    Task,
    Tensor,
    Verdict,
    make_leaf,
    model_root_of_tensors,
    pae,
    sign_message,
    values_hash,
)
from mesh.core.envelope import SignedMessage

HERE = Path(__file__).resolve().parent

CLIENT_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
WORKER_SEED = bytes(range(32))
AUDITOR_SEED = bytes([0x42]) * 32
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def model_leaves() -> list[tuple[str, str, tuple[int, ...], bytes]]:
    return [
        make_leaf("embeddings.weight", "F32", (2, 2), bytes(range(16))),
        make_leaf("encoder.bias", "F16", (2,), b"\x00\x3c\x00\x40"),
        make_leaf("pooler.ids", "I64", (1,), (7).to_bytes(8, "little")),
    ]


def inputs() -> dict[str, Tensor | list[str]]:
    return {"text": ["the quick brown fox"], "ids": Tensor("int64", (2,), bytes(16))}


def outputs() -> dict[str, Tensor | list[str]]:
    return {"embedding": Tensor("float32", (1, 2), b"\x00\x00\x80\x3f\x00\x00\x00\x40")}


def build_messages() -> dict[str, tuple[Identity, SignedMessage]]:
    """The fixed message of each kind with the identity that signs it."""
    client = Identity.from_seed(CLIENT_SEED)
    worker = Identity.from_seed(WORKER_SEED)
    auditor = Identity.from_seed(AUDITOR_SEED)
    root = model_root_of_tensors(model_leaves())
    task = Task(
        client=client.public_key,
        nonce=bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
        created_ms=T0,
        expires_ms=T0 + 120_000,
        model_root=root,
        input_hash=values_hash(inputs()),
        params={"max_tokens": 32, "seed": 1234, "temperature_milli": 0, "top_k": 1},
        verify="audit",
        target=worker.public_key,
    )
    task_id = sign_message(client, task).digest
    receipt = Receipt(
        task_id=task_id,
        worker=worker.public_key,
        client=client.public_key,
        seq=0,
        prev=bytes(32),
        model_root=root,
        runtime={
            "batch_size": 8,
            "deterministic": True,
            "device": "cuda:0 NVIDIA H100",
            "dtype": "float16",
            "torch": "2.13.0",
        },
        output_hash=values_hash(outputs()),
        started_ms=T0 + 1_000,
        finished_ms=T0 + 1_042,
        commitment=b"",
    )
    capacity = CapacityRecord(
        peer=worker.public_key,
        addrs=("/ip4/10.0.0.7/tcp/4001", "/ip6/::1/tcp/4001"),
        models=(root,),
        model_names=("minilm-l6",),
        device="cuda:0 NVIDIA H100",
        memory_free_mb=71_000,
        queue_depth=3,
        queue_capacity=256,
        throughput_milli=850_000,
        price_micro=25,
        region="eu-central",
        created_ms=T0,
        expires_ms=T0 + 300_000,
    )
    receipt_digest = sign_message(worker, receipt).digest
    verdict = Verdict(
        auditor=auditor.public_key,
        worker=worker.public_key,
        task_id=task_id,
        receipt_digest=receipt_digest,
        model_root=root,
        agree=False,
        kind="outputs",
        distance_micro=1_250_000,
        evidence=hashlib.sha256(b"mesh verdict evidence").digest(),
        created_ms=T0 + 5_000,
    )
    return {
        "task": (client, task),
        "receipt": (worker, receipt),
        "capacity": (worker, capacity),
        "verdict": (auditor, verdict),
    }


def build_vectors() -> dict[str, dict[str, Any]]:
    """Every vector file's content, keyed by file stem."""
    vectors: dict[str, dict[str, Any]] = {}
    for name, (identity, message) in build_messages().items():
        signed = sign_message(identity, message)
        vectors[name] = {
            "type": message.TYPE,
            "seed": identity.seed.hex(),
            "public_key": identity.public_key.hex(),
            "peer_id": identity.peer_id,
            "body": signed.body.hex(),
            "pae": pae(message.TYPE, signed.body).hex(),
            "signature": signed.sig.hex(),
            "envelope": signed.envelope.hex(),
            "digest": signed.digest.hex(),
            "envelope_bytes": len(signed.envelope),
        }
    leaves = model_leaves()
    vectors["model_root"] = {
        "leaves": [[n, d, list(s), h.hex()] for n, d, s, h in leaves],
        "root": model_root_of_tensors(leaves).hex(),
        "inputs_hash": values_hash(inputs()).hex(),
        "outputs_hash": values_hash(outputs()).hex(),
        "empty_root": hashlib.sha256(b"\x02").hexdigest(),
    }
    return vectors


def main() -> None:
    for name, vector in build_vectors().items():
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(vector, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
