"""Quickstart for the Python SDK: run a model on the mesh and check its receipt.

Start a local testnet in one terminal (or use a real mesh's bootstrap file)::

    mesh testnet --nodes 3 --models tiny-mlp,tiny-gpt --bootstrap-out boot.txt

then, in another::

    python examples/sdk_quickstart.py boot.txt [RECEIPT_DIR]

It lists the live peers, classifies two rows with ``tiny-mlp`` somewhere on the
mesh, checks the worker's receipt again (the client already did), runs a small
batch with ``map``, streams a generation from ``tiny-gpt`` token by token, and,
given RECEIPT_DIR, saves the first receipt as the three files ``mesh verify``
reads, so anyone can check it offline::

    mesh verify DIR/receipt.bin --task DIR/receipt.bin.task --output DIR/receipt.bin.output
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import mesh
from mesh.core.values import encode_values


def rows_tensor(rows: list[list[float]]) -> mesh.Tensor:
    """A float32 tensor of shape (len(rows), 32): raw little-endian bytes, C order."""
    flat = [value for row in rows for value in row]
    return mesh.Tensor("float32", (len(rows), 32), struct.pack(f"<{len(flat)}f", *flat))


def argmax_rows(logits: mesh.Tensor) -> list[int]:
    values = struct.unpack(f"<{logits.numel}f", logits.data)
    width = logits.shape[1]
    return [
        max(range(width), key=lambda c, r=r: values[r * width + c])  # type: ignore[misc]
        for r in range(logits.shape[0])
    ]


def main(argv: list[str]) -> int:
    bootstrap = argv[1] if len(argv) > 1 else "bootstrap-nodes.txt"
    receipt_dir = Path(argv[2]) if len(argv) > 2 else None
    rows = [[((i * 7 + j) % 11) / 5.0 - 1.0 for j in range(32)] for i in range(2)]

    with mesh.Client(bootstrap=bootstrap) as client:
        for peer in client.peers():
            print(f"peer {peer.peer_id} serves {','.join(peer.record.model_names)}")

        result = client.run("tiny-mlp", {"x": rows_tensor(rows)}, timeout=30)
        # Raises mesh.VerificationError if the receipt does not bind this task,
        # this model and these outputs under the worker's key.
        mesh.verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
        logits = result.outputs["logits"]
        assert isinstance(logits, mesh.Tensor)
        receipt = result.receipt.message
        print(f"classes {argmax_rows(logits)} from {result.worker} in {result.latency_ms:.1f} ms")
        print(f"receipt verified: seq={receipt.seq} task={receipt.task_id.hex()[:16]}")

        batch = [{"x": rows_tensor([[v * k for v in rows[0]]])} for k in range(1, 5)]
        results = client.map("tiny-mlp", batch, timeout=30)
        workers = sorted({r.worker for r in results})
        print(f"map: {len(results)} results from {len(workers)} worker(s), all verified")

        # Tokens as the worker generates them; the stream ends with the verified result.
        with client.stream("tiny-gpt", {"prompt": ["Once upon"]}, seed=7, max_tokens=24) as chunks:
            pieces = [chunk.text for chunk in chunks]
        generated = chunks.result
        assert "".join(pieces) == generated.outputs["text"][0]  # what the receipt binds
        print(f"stream: {len(pieces)} chunks from {generated.worker}, result verified")

    if receipt_dir is not None:
        receipt_dir.mkdir(parents=True, exist_ok=True)
        path = receipt_dir / "receipt.bin"
        path.write_bytes(result.receipt.envelope)
        Path(f"{path}.task").write_bytes(result.task.envelope)
        Path(f"{path}.output").write_bytes(encode_values(result.outputs))
        print(f"saved {path} (+ .task, .output) for mesh verify")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except mesh.MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
