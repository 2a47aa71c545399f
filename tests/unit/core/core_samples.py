"""Fixed identities and sample messages shared by the core tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from mesh.core import (
    CapacityRecord,
    Identity,
    Receipt,
    Signed,
    Task,
    Tensor,
    Values,
    Verdict,
    make_receipt,
    sign_message,
    values_hash,
)
from mesh.core.receipts import ZERO_HASH

CLIENT = Identity.from_seed(bytes([1]) * 32)
WORKER = Identity.from_seed(bytes([2]) * 32)
AUDITOR = Identity.from_seed(bytes([3]) * 32)
OTHER = Identity.from_seed(bytes([4]) * 32)

MODEL_ROOT = bytes(range(32))
NOW_MS = 1_750_000_000_000


def sample_inputs() -> Values:
    return {
        "input_ids": Tensor("int64", (1, 3), (101).to_bytes(8, "little") * 3),
        "text": ["hello mesh"],
    }


def sample_outputs() -> Values:
    return {"embedding": Tensor("float32", (1, 4), bytes(16))}


def sample_task(**changes: Any) -> Task:
    task = Task(
        client=CLIENT.public_key,
        nonce=bytes([7]) * 16,
        created_ms=NOW_MS,
        expires_ms=NOW_MS + 60_000,
        model_root=MODEL_ROOT,
        input_hash=values_hash(sample_inputs()),
        params={"seed": 42, "max_tokens": 16, "temperature_milli": 700},
        verify="audit",
        target=b"",
    )
    return dataclasses.replace(task, **changes)


def signed_task(**changes: Any) -> Signed[Task]:
    return sign_message(CLIENT, sample_task(**changes))


def sample_receipt(task: Signed[Task] | None = None, **changes: Any) -> Receipt:
    task = task or signed_task()
    return dataclasses.replace(signed_receipt(task).message, **changes)


def signed_receipt(task: Signed[Task] | None = None, *, seq: int = 0) -> Signed[Receipt]:
    task = task or signed_task()
    return make_receipt(
        WORKER,
        task_id=task.digest,
        client=task.message.client,
        seq=seq,
        prev=ZERO_HASH if seq == 0 else bytes([9]) * 32,
        model_root=task.message.model_root,
        runtime={
            "torch": "2.13.0",
            "device": "cpu",
            "dtype": "float32",
            "batch_size": 4,
            "deterministic": True,
        },
        output_hash=values_hash(sample_outputs()),
        started_ms=NOW_MS + 5,
        finished_ms=NOW_MS + 25,
    )


def sample_capacity(**changes: Any) -> CapacityRecord:
    record = CapacityRecord(
        peer=WORKER.public_key,
        addrs=("/ip4/127.0.0.1/tcp/4001",),
        models=(MODEL_ROOT,),
        model_names=("minilm-l6",),
        device="cpu",
        memory_free_mb=2048,
        queue_depth=1,
        queue_capacity=64,
        throughput_milli=12_500,
        price_micro=10,
        region="eu-west",
        created_ms=NOW_MS,
        expires_ms=NOW_MS + 300_000,
    )
    return dataclasses.replace(record, **changes)


def sample_verdict(receipt: Signed[Receipt] | None = None, **changes: Any) -> Verdict:
    receipt = receipt or signed_receipt()
    verdict = Verdict(
        auditor=AUDITOR.public_key,
        worker=receipt.message.worker,
        task_id=receipt.message.task_id,
        receipt_digest=receipt.digest,
        model_root=receipt.message.model_root,
        agree=True,
        kind="outputs",
        distance_micro=12,
        evidence=bytes(range(32)),
        created_ms=NOW_MS + 1000,
    )
    return dataclasses.replace(verdict, **changes)
