"""Batched tasks: the request and result, the Merkle roots, and one item proven alone."""

from __future__ import annotations

import struct

import pytest
from core_samples import CLIENT, MODEL_ROOT, NOW_MS, WORKER, sample_task

from mesh.core import canonical, merkle
from mesh.core.batch import (
    MAX_BATCH_ITEMS,
    BatchRequest,
    ItemProof,
    decode_any_request,
    decode_batch_response,
    encode_batch_request,
    encode_batch_result,
    item_leaf,
    item_proofs,
    items_root,
    verify_batch_item,
    verify_batch_receipt,
)
from mesh.core.envelope import Signed, sign_message
from mesh.core.messages import BATCH_PARAM, ErrorReply, Request, Task, encode_request
from mesh.core.receipts import ZERO_HASH, make_receipt, verify_receipt
from mesh.core.tensors import Tensor
from mesh.core.values import Values, values_hash
from mesh.errors import MalformedMessage, OutputMismatch, TaskMismatch, TooLarge

pytestmark = pytest.mark.unit


def _row(k: float) -> Values:
    return {"x": Tensor("float32", (1, 2), struct.pack("<2f", k, -k))}


ITEMS = [_row(float(k)) for k in range(5)]
OUTPUTS = [{"y": Tensor("float32", (1, 1), struct.pack("<f", 2.0 * k))} for k in range(5)]


def _batch_task(items: list[Values] = ITEMS, **params: int) -> Signed[Task]:
    task = sample_task(
        input_hash=items_root([values_hash(i) for i in items]),
        params={"seed": 1, BATCH_PARAM: len(items), **params},
    )
    return sign_message(CLIENT, task)


def _receipt(task: Signed[Task], outputs: list[Values] = OUTPUTS) -> Signed[object]:
    return make_receipt(
        WORKER,
        task_id=task.digest,
        client=task.message.client,
        seq=0,
        prev=ZERO_HASH,
        model_root=MODEL_ROOT,
        runtime={"device": "cpu"},
        output_hash=items_root([values_hash(o) for o in outputs]),
        started_ms=NOW_MS + 1,
        finished_ms=NOW_MS + 2,
    )


def test_the_merkle_code_has_exact_known_answers() -> None:
    assert item_leaf(0, bytes(32)) == merkle.leaf(
        canonical.encode(["mesh/batch-item/v1", 0, bytes(32)])
    )
    assert item_leaf(0, bytes(32)).hex() == (
        "82b7a139b3868a5d430ad36ed6251747b280bb6c80773db168b2b5613bf0db31"
    )
    hashes = [bytes([i]) * 32 for i in range(3)]
    leaves = [item_leaf(i, h) for i, h in enumerate(hashes)]
    # Three leaves: ((l0 l1) l2), the odd one promoted unchanged.
    assert items_root(hashes) == merkle.node(merkle.node(leaves[0], leaves[1]), leaves[2])
    assert items_root(hashes).hex() == (
        "aca29dfdf759e163903318380219e6fc6918ab760714fc229d46285449e392e8"
    )
    assert merkle.root([]) == merkle.EMPTY_ROOT


def test_a_batch_request_round_trips_and_is_checked_against_the_signed_task() -> None:
    task = _batch_task()
    decoded = decode_any_request(encode_batch_request(task, ITEMS))
    assert isinstance(decoded, BatchRequest)
    assert decoded.items == ITEMS and decoded.task.digest == task.digest
    # Items swapped: the input root no longer matches what the client signed.
    swapped = [ITEMS[1], ITEMS[0], *ITEMS[2:]]
    with pytest.raises(MalformedMessage, match="input_hash"):
        decode_any_request(encode_batch_request(task, swapped))
    with pytest.raises(MalformedMessage, match="count"):
        decode_any_request(encode_batch_request(task, ITEMS[:4]))
    # A plain task sent as a batch, and a batched task sent as a plain one.
    plain = sign_message(CLIENT, sample_task())
    with pytest.raises(MalformedMessage, match=BATCH_PARAM):
        decode_any_request(encode_batch_request(plain, ITEMS))
    with pytest.raises(MalformedMessage, match=r"batch request|input_hash"):
        decode_any_request(encode_request(task, ITEMS[0]))
    # A plain request still decodes as before.
    single = sign_message(CLIENT, sample_task(input_hash=values_hash(ITEMS[0])))
    assert isinstance(decode_any_request(encode_request(single, ITEMS[0])), Request)


def test_the_item_count_is_capped() -> None:
    many = [_row(0.0)] * (MAX_BATCH_ITEMS + 1)
    with pytest.raises(TooLarge):
        decode_any_request(encode_batch_request(_batch_task(many), many))


def test_a_batch_result_verifies_whole_and_item_by_item() -> None:
    task = _batch_task()
    receipt = _receipt(task)
    result = decode_batch_response(encode_batch_result(receipt, OUTPUTS))
    assert not isinstance(result, ErrorReply)
    verify_batch_receipt(result.receipt, task=task, outputs=result.outputs)
    with pytest.raises(OutputMismatch):
        verify_batch_receipt(receipt, task=task, outputs=[*OUTPUTS[:4], OUTPUTS[0]])
    with pytest.raises(OutputMismatch):
        verify_batch_receipt(receipt, task=task, outputs=OUTPUTS[:4])
    # A batch's receipt cannot be read as a single task's.
    with pytest.raises(TaskMismatch):
        verify_receipt(receipt, task=task, outputs=OUTPUTS[0])

    proofs = item_proofs([values_hash(i) for i in ITEMS], [values_hash(o) for o in OUTPUTS])
    for index, proof in enumerate(proofs):
        again = ItemProof.decode(proof.encode())
        assert again == proof
        verify_batch_item(
            receipt, task=task, outputs=OUTPUTS[index], proof=again, inputs=ITEMS[index]
        )
    with pytest.raises(OutputMismatch):  # another item's outputs under this item's proof
        verify_batch_item(receipt, task=task, outputs=OUTPUTS[1], proof=proofs[0])
    with pytest.raises(MalformedMessage):  # another item's inputs
        verify_batch_item(receipt, task=task, outputs=OUTPUTS[0], proof=proofs[0], inputs=ITEMS[1])
    moved = ItemProof(1, 5, proofs[0].path, proofs[0].input_path)
    with pytest.raises(OutputMismatch):  # a path is bound to its index
        verify_batch_item(receipt, task=task, outputs=OUTPUTS[0], proof=moved)
    with pytest.raises(TaskMismatch):
        verify_batch_item(receipt, task=task, outputs=OUTPUTS[0], proof=ItemProof(0, 4, (), ()))


@pytest.mark.parametrize(
    "wire",
    [
        {"kind": "batch-item-proof", "count": 2, "index": 2, "path": [], "input_path": []},
        {"kind": "batch-item-proof", "count": 2, "index": 0, "path": [[1, b"x"]], "input_path": []},
        {"kind": "other", "count": 2, "index": 0, "path": [], "input_path": []},
    ],
)
def test_bad_proofs_are_refused(wire: dict[str, object]) -> None:
    with pytest.raises(MalformedMessage):
        ItemProof.decode(canonical.encode(wire))


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13])
def test_all_paths_equals_each_path(count: int) -> None:
    leaves = [item_leaf(i, bytes([i]) * 32) for i in range(count)]
    assert merkle.all_paths(leaves) == [merkle.path(leaves, i) for i in range(count)]
    for i, steps in enumerate(merkle.all_paths(leaves)):
        assert merkle.root_from_path(leaves[i], steps) == merkle.root(leaves)


def test_assembled_messages_are_exactly_the_canonical_encoding() -> None:
    from mesh.core.values import values_to_wire

    task = _batch_task()
    assert encode_batch_request(task, ITEMS) == canonical.encode(
        {"items": [values_to_wire(i) for i in ITEMS], "kind": "batch", "task": task.to_wire()}
    )
    receipt = _receipt(task)
    many = OUTPUTS * 5  # past 15 items the array header takes another form
    assert encode_batch_result(receipt, many) == canonical.encode(
        {
            "kind": "batch-result",
            "outputs": [values_to_wire(o) for o in many],
            "receipt": receipt.to_wire(),
        }
    )
    decoded = decode_batch_response(encode_batch_result(receipt, many))
    assert not isinstance(decoded, ErrorReply)
    assert decoded.output_hashes == [values_hash(o) for o in many]
