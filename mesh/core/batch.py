"""Batched tasks: one signed task over many inputs, one receipt over a Merkle root of outputs.

A client signs ONE :class:`~mesh.core.messages.Task` for ``n`` items of one
model. The task says so in its (signed) params, ``{"batch_items": n}``, and its
``input_hash`` is the Merkle root (:mod:`mesh.core.merkle`) over the items'
input hashes. The worker runs every item (within its own batches) and answers
with ONE receipt whose ``output_hash`` is the Merkle root over the items'
output hashes. Signing, verifying, the replay check, the receipt and its fsync,
and the round trip are then paid once per batch, not once per item.

Each leaf binds an item's position::

    leaf(i, h) = sha256(b"\\x00" + canonical.encode(["mesh/batch-item/v1", i, h]))

with ``h = values_hash(item)`` (inputs or outputs). Any one item is provable
alone: its outputs, the receipt, the task and the item's :class:`ItemProof`
(its index, the item count and the sibling path up to ``output_hash``; also the
path of its inputs up to ``input_hash``) are all a verifier needs
(:func:`verify_batch_item`, ``mesh verify --proof``).

On the task stream (``/mesh/task/1.0.0``), beside the single-task kinds of
:mod:`mesh.core.messages`::

    request = {"items": [<values>...], "kind": "batch", "task": <task envelope map>}
    result  = {"kind": "batch-result", "outputs": [<values>...], "receipt": <receipt envelope>}

A task carrying ``batch_items`` is only ever a batch: sent as a single task it
is refused, so a receipt's ``output_hash`` is never read the wrong way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from mesh.core import canonical, limits, merkle
from mesh.core.envelope import Signed, open_signed
from mesh.core.merkle import ProofStep
from mesh.core.messages import (
    BATCH_PARAM,
    ErrorReply,
    Receipt,
    Request,
    Task,
    request_from_wire,
)
from mesh.core.receipts import verify_receipt
from mesh.core.tensors import Tensor
from mesh.core.values import Values, encode_values, values_from_wire, values_hash
from mesh.errors import MalformedMessage, OutputMismatch, TaskMismatch, TooLarge

ITEM_LEAF_TYPE = "mesh/batch-item/v1"
# Items in one batch: 1,024 small inputs is ~0.2 MB of tiny-mlp rows; bigger
# inputs reach the message cap first. A path then has at most 10 steps.
MAX_BATCH_ITEMS = 1024
MAX_PATH_STEPS = 11  # ceil(log2(MAX_BATCH_ITEMS)) + 1

Items = Sequence[Mapping[str, Tensor | Sequence[str]]]


def batch_count(task: Task) -> int | None:
    """The item count of a batched task, or None for a single task."""
    return task.params.get(BATCH_PARAM)


def item_leaf(index: int, item_hash: bytes) -> bytes:
    """The leaf hash of item ``index`` whose values hash to ``item_hash``."""
    return merkle.leaf(canonical.encode([ITEM_LEAF_TYPE, index, item_hash]))


def items_root(item_hashes: Sequence[bytes]) -> bytes:
    """The Merkle root over items' hashes (inputs: a task's ``input_hash``; outputs: a
    receipt's ``output_hash``)."""
    return merkle.root([item_leaf(i, h) for i, h in enumerate(item_hashes)])


def encode_items(items: Items) -> list[bytes]:
    """Each item's canonical bytes (``values_hash`` is their SHA-256): encoded once, then
    both hashed and sent (:func:`encode_batch_request`, :func:`encode_batch_result`)."""
    return [encode_values(i) for i in items]


def hash_encoded(encoded: Sequence[bytes]) -> list[bytes]:
    """The items' hashes from their canonical bytes."""
    return [hashlib.sha256(e).digest() for e in encoded]


def _wire_hash(wire_item: Any) -> bytes:
    # A value taken from a message that canonical.decode accepted is canonical:
    # packing it as-is gives its canonical bytes, without re-checking it.
    return hashlib.sha256(msgpack.packb(wire_item, use_bin_type=True)).digest()


def _array(encoded: Sequence[bytes]) -> bytes:
    packer = msgpack.Packer(use_bin_type=True)
    header: bytes = packer.pack_array_header(len(encoded))
    return header + b"".join(encoded)


def _key(text: str) -> bytes:
    packed: bytes = msgpack.packb(text, use_bin_type=True)
    return packed


def check_count(count: int) -> None:
    """Raise unless ``count`` items may form a batch.

    Raises:
        MalformedMessage: fewer than one item. TooLarge: more than MAX_BATCH_ITEMS.
    """
    if count < 1:
        raise MalformedMessage("a batch holds at least one item")
    if count > MAX_BATCH_ITEMS:
        raise TooLarge(f"a batch of {count} items; the cap is {MAX_BATCH_ITEMS}")


# -- the request ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """A decoded batch request: the verified signed task and each item's inputs."""

    task: Signed[Task]
    items: list[Values]


def encode_batch_request(
    task: Signed[Task], items: Items, *, encoded: Sequence[bytes] | None = None
) -> bytes:
    """The request message for a signed batched task and its items.

    Args:
        task: the signed batched task.
        items: each item's inputs.
        encoded: the items' canonical bytes if already at hand (:func:`encode_items`).
    """
    parts = encode_items(items) if encoded is None else encoded
    # The canonical map {"items", "kind", "task"} assembled from encoded parts:
    # the same bytes canonical.encode gives, without re-walking every item.
    return b"".join(
        (
            b"\x83",
            _key("items"),
            _array(parts),
            _key("kind"),
            _key("batch"),
            _key("task"),
            canonical.encode(task.to_wire()),
        )
    )


def decode_any_request(
    data: bytes, *, max_bytes: int = limits.MAX_MESSAGE_BYTES
) -> Request | BatchRequest:
    """Decode a single-task or a batch request; verify the task and that the inputs match it.

    Raises:
        MalformedMessage, TooLarge, BadSignature.
    """
    wire = canonical.decode(data, max_bytes=max_bytes)
    if isinstance(wire, dict) and wire.get("kind") == "batch":
        return _batch_from_wire(wire)
    request = request_from_wire(wire)
    if batch_count(request.task.message) is not None:
        raise MalformedMessage(f"a task with {BATCH_PARAM!r} must come as a batch request")
    return request


def _batch_from_wire(wire: dict[str, Any]) -> BatchRequest:
    if wire.keys() != {"items", "kind", "task"}:
        raise MalformedMessage("a batch request is a map of exactly items, kind, task")
    task = open_signed(wire["task"], Task)
    count = batch_count(task.message)
    if count is None:
        raise MalformedMessage(f"a batch request's task must say {BATCH_PARAM!r}")
    check_count(count)
    raw = wire["items"]
    if not isinstance(raw, list) or len(raw) != count:
        raise MalformedMessage(f"the task says {count} items; the request holds another count")
    items = [values_from_wire(item) for item in raw]
    if items_root([_wire_hash(item) for item in raw]) != task.message.input_hash:
        raise MalformedMessage("the items do not match the task's input_hash")
    return BatchRequest(task, items)


# -- the result ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchResult:
    """A decoded batch result: the receipt (signature verified), each item's outputs and
    their hashes (``values_hash``)."""

    receipt: Signed[Receipt]
    outputs: list[Values]
    output_hashes: list[bytes]


def encode_batch_result(
    receipt: Signed[Receipt], outputs: Items, *, encoded: Sequence[bytes] | None = None
) -> bytes:
    """The success response of a batch: every item's outputs and the one receipt.

    Args:
        receipt: the batch's receipt.
        outputs: each item's outputs.
        encoded: their canonical bytes if already at hand (:func:`encode_items`).
    """
    parts = encode_items(outputs) if encoded is None else encoded
    return b"".join(
        (
            b"\x83",
            _key("kind"),
            _key("batch-result"),
            _key("outputs"),
            _array(parts),
            _key("receipt"),
            canonical.encode(receipt.to_wire()),
        )
    )


def decode_batch_response(
    data: bytes, *, max_bytes: int = limits.MAX_MESSAGE_BYTES
) -> BatchResult | ErrorReply:
    """Decode the answer to a batch: a :class:`BatchResult` or an ErrorReply.

    Raises:
        MalformedMessage, TooLarge, BadSignature.
    """
    wire = canonical.decode(data, max_bytes=max_bytes)
    if isinstance(wire, dict) and wire.get("kind") == "error":
        return ErrorReply.from_wire(wire)
    if (
        not isinstance(wire, dict)
        or wire.keys() != {"kind", "outputs", "receipt"}
        or wire["kind"] != "batch-result"
    ):
        raise MalformedMessage("a batch result is a map of exactly kind, outputs, receipt")
    if not isinstance(wire["outputs"], list) or len(wire["outputs"]) > MAX_BATCH_ITEMS:
        raise MalformedMessage("a batch result's outputs are a list of at most the batch cap")
    receipt = open_signed(wire["receipt"], Receipt)
    outputs = [values_from_wire(o) for o in wire["outputs"]]
    return BatchResult(receipt, outputs, [_wire_hash(o) for o in wire["outputs"]])


# -- proofs and checks ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemProof:
    """Where one item sits in its batch: enough to check it alone against the receipt.

    Attributes:
        index: the item's position in the batch.
        count: the batch's item count (the task's ``batch_items``).
        path: sibling path from the item's output leaf to the receipt's ``output_hash``.
        input_path: sibling path from its input leaf to the task's ``input_hash``.
    """

    index: int
    count: int
    path: tuple[ProofStep, ...]
    input_path: tuple[ProofStep, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "index": self.index,
            "input_path": [[left, h] for left, h in self.input_path],
            "kind": "batch-item-proof",
            "path": [[left, h] for left, h in self.path],
        }

    def encode(self) -> bytes:
        """The canonical bytes of this proof (what ``mesh verify --proof`` reads)."""
        return canonical.encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> ItemProof:
        """Decode a proof.

        Raises:
            MalformedMessage: not a batch item proof.
        """
        wire = canonical.decode(data, max_bytes=64 * 1024)
        keys = {"count", "index", "input_path", "kind", "path"}
        if not isinstance(wire, dict) or wire.keys() != keys or wire["kind"] != "batch-item-proof":
            raise MalformedMessage(f"a batch item proof is a map of exactly {sorted(keys)}")
        count, index = wire["count"], wire["index"]
        if type(count) is not int or type(index) is not int or not 0 <= index < count:
            raise MalformedMessage("a batch item proof's index lies outside its count")
        check_count(count)
        return cls(index, count, _steps(wire["path"]), _steps(wire["input_path"]))


def _steps(raw: Any) -> tuple[ProofStep, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_PATH_STEPS:
        raise MalformedMessage("a Merkle path is a short list of steps")
    steps: list[ProofStep] = []
    for step in raw:
        if (
            not isinstance(step, list)
            or len(step) != 2
            or type(step[0]) is not bool
            or type(step[1]) is not bytes
            or len(step[1]) != 32
        ):
            raise MalformedMessage("a Merkle path step is [bool, 32 bytes]")
        steps.append((step[0], step[1]))
    return tuple(steps)


def item_proofs(input_hashes: Sequence[bytes], output_hashes: Sequence[bytes]) -> list[ItemProof]:
    """The proof of every item of a batch, from its items' input and output hashes."""
    count = len(output_hashes)
    ins = merkle.all_paths([item_leaf(i, h) for i, h in enumerate(input_hashes)])
    outs = merkle.all_paths([item_leaf(i, h) for i, h in enumerate(output_hashes)])
    return [ItemProof(i, count, tuple(outs[i]), tuple(ins[i])) for i in range(count)]


def verify_batch_receipt(
    receipt: Signed[Receipt],
    *,
    task: Signed[Task],
    outputs: Sequence[Values],
    output_hashes: Sequence[bytes] | None = None,
) -> None:
    """Check a whole batch's receipt: binding to the task, and every item's outputs.

    Raises:
        TaskMismatch: the receipt answers another task, or the task is no batch.
        OutputMismatch: the outputs (their count or values) do not give ``output_hash``.

    ``output_hashes``: the outputs' hashes when already known (a decoded
    :class:`BatchResult` carries them, taken from the received bytes).
        MalformedMessage: an inconsistent receipt (see ``verify_receipt``).
    """
    count = _count_of(task)
    verify_receipt(receipt, task=task)
    if len(outputs) != count:
        raise OutputMismatch(f"{len(outputs)} outputs for a batch of {count} items")
    hashes = [values_hash(o) for o in outputs] if output_hashes is None else output_hashes
    if len(hashes) != count or items_root(hashes) != receipt.message.output_hash:
        raise OutputMismatch("the items' outputs do not match the receipt's output_hash")


def verify_batch_item(
    receipt: Signed[Receipt],
    *,
    task: Signed[Task],
    outputs: Values,
    proof: ItemProof,
    inputs: Mapping[str, Tensor | Sequence[str]] | None = None,
) -> None:
    """Check ONE item of a batch alone: its outputs (and inputs, if given) against the receipt.

    Raises:
        TaskMismatch: the receipt answers another task, the task is no batch, or
            the proof's count is not the task's.
        OutputMismatch: the outputs do not lead to the receipt's ``output_hash``.
        MalformedMessage: the inputs do not lead to the task's ``input_hash``, or
            an inconsistent receipt.
    """
    if proof.count != _count_of(task):
        raise TaskMismatch(f"the proof is for a batch of {proof.count}, the task's is another")
    verify_receipt(receipt, task=task)
    leaf = item_leaf(proof.index, values_hash(outputs))
    if merkle.root_from_path(leaf, proof.path) != receipt.message.output_hash:
        raise OutputMismatch(f"item {proof.index}'s outputs are not in the receipt's output_hash")
    if inputs is not None:
        leaf = item_leaf(proof.index, values_hash(inputs))
        if merkle.root_from_path(leaf, proof.input_path) != task.message.input_hash:
            raise MalformedMessage(f"item {proof.index}'s inputs are not in the task's input_hash")


def _count_of(task: Signed[Task]) -> int:
    count = batch_count(task.message)
    if count is None:
        raise TaskMismatch(f"not a batched task (no {BATCH_PARAM!r} param)")
    return count
