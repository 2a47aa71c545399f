"""Micro-benchmark of the core's receipt path; prints one JSON object.

Run: ``python benchmarks/bench_core.py [--iterations N]``.

Measures a typical receipt (runtime claim with five entries, empty commitment):

- ``receipt_bytes``: size of the signed envelope;
- ``sign_us``: :func:`make_receipt` (build, encode body, sign, encode envelope);
- ``verify_us``: :func:`open_signed` + :func:`verify_receipt` against its task;
- ``encode_us``: canonical encoding of the receipt body;
- ``decode_us``: strict canonical decoding of the body plus ``Receipt.from_wire``;
- ``frame_us``: framing the envelope and reading it back through FrameReader.

Each figure is the median over ``iterations`` timed calls, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from mesh.core import (
    Identity,
    Receipt,
    Task,
    canonical,
    make_receipt,
    open_signed,
    sign_message,
    verify_receipt,
)
from mesh.core.framing import FrameReader, encode_frames


def _median_us(fn: Callable[[], Any], iterations: int) -> float:
    for _ in range(min(200, iterations)):
        fn()  # warm caches and lazy schema resolution
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return round(statistics.median(samples) / 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()

    client = Identity.from_seed(bytes([1]) * 32)
    worker = Identity.from_seed(bytes([2]) * 32)
    now = 1_767_225_600_000
    task = sign_message(
        client,
        Task(
            client=client.public_key,
            nonce=os.urandom(16),
            created_ms=now,
            expires_ms=now + 60_000,
            model_root=os.urandom(32),
            input_hash=os.urandom(32),
            params={"seed": 7, "max_tokens": 64, "temperature_milli": 700},
            verify="audit",
            target=b"",
        ),
    )
    fields: dict[str, Any] = {
        "task_id": task.digest,
        "client": task.message.client,
        "seq": 123_456,
        "prev": os.urandom(32),
        "model_root": task.message.model_root,
        "runtime": {
            "torch": "2.13.0",
            "device": "cuda:0 NVIDIA H100 80GB HBM3",
            "dtype": "float16",
            "batch_size": 16,
            "deterministic": True,
        },
        "output_hash": os.urandom(32),
        "started_ms": now + 10,
        "finished_ms": now + 52,
    }
    signed = make_receipt(worker, **fields)
    envelope = signed.envelope
    wire = signed.message.to_wire()
    body = signed.body

    def verify() -> None:
        verify_receipt(open_signed(envelope, Receipt), task=task)

    def frame() -> None:
        FrameReader().feed(encode_frames(envelope))

    result = {
        "receipt_bytes": len(envelope),
        "sign_us": _median_us(lambda: make_receipt(worker, **fields), args.iterations),
        "verify_us": _median_us(verify, args.iterations),
        "encode_us": _median_us(lambda: canonical.encode(wire), args.iterations),
        "decode_us": _median_us(lambda: Receipt.from_wire(canonical.decode(body)), args.iterations),
        "frame_us": _median_us(frame, args.iterations),
        "iterations": args.iterations,
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "system": platform.platform(terse=True),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
