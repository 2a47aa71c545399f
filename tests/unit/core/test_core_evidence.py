"""Check tasks and verdict files: formats, round trips, and what the offline check refuses."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from mesh.core import Identity, Signed, Tensor, Values, make_receipt, sign_message, values_hash
from mesh.core.checks import (
    CHECK_COMMITMENT,
    CHECK_DTYPE,
    CHECK_TOKENS,
    check_answer,
    is_check,
    make_check_inputs,
    parse_check,
    read_check_answer,
)
from mesh.core.evidence import (
    Evidence,
    Exhibit,
    VerdictFile,
    decode_verdict_file,
    is_verdict_file,
    verify_verdict_file,
)
from mesh.core.messages import Receipt, Task, Verdict
from mesh.core.receipts import ZERO_HASH
from mesh.errors import InvalidInput, MalformedMessage, VerificationError

pytestmark = pytest.mark.unit

CLIENT = Identity.from_seed(bytes([1]) * 32)
ACCUSED = Identity.from_seed(bytes([2]) * 32)
WITNESS = Identity.from_seed(bytes([3]) * 32)
AUDITOR = Identity.from_seed(bytes([5]) * 32)
ROOT = bytes(range(32))
NOW = 1_750_000_000_000
PROMPT: Values = {"prompt": ["hello"]}


def _task(inputs: Values, nonce: int, params: dict[str, int] | None = None) -> Signed[Task]:
    return sign_message(
        CLIENT,
        Task(
            client=CLIENT.public_key,
            nonce=bytes([nonce]) * 16,
            created_ms=NOW,
            expires_ms=NOW + 60_000,
            model_root=ROOT,
            input_hash=values_hash(inputs),
            params=params if params is not None else {"seed": 1},
            verify="audit",
            target=b"",
        ),
    )


def _result(
    worker: Identity, inputs: Values, outputs: Values, nonce: int, commitment: bytes = b""
) -> tuple[Signed[Task], Signed[Receipt]]:
    task = _task(inputs, nonce)
    receipt = make_receipt(
        worker,
        task_id=task.digest,
        client=CLIENT.public_key,
        seq=0,
        prev=ZERO_HASH,
        model_root=ROOT,
        runtime={"device": "cpu", "dtype": "float32"},
        output_hash=values_hash(outputs),
        started_ms=NOW,
        finished_ms=NOW + 5,
        commitment=commitment,
    )
    return task, receipt


def _tokens(*ids: int) -> Tensor:
    return Tensor("int64", (len(ids),), struct.pack(f"<{len(ids)}q", *ids))


def _outputs_file(*, note: str = "differs") -> VerdictFile:
    x: Values = {"x": Tensor("float32", (1,), struct.pack("<f", 1.0))}
    wrong: Values = {"y": Tensor("float32", (1,), struct.pack("<f", 9.0))}
    right: Values = {"y": Tensor("float32", (1,), struct.pack("<f", 2.0))}
    task_a, receipt_a = _result(ACCUSED, x, wrong, 1)
    task_w, receipt_w = _result(WITNESS, x, right, 2)
    evidence = Evidence(
        (
            Exhibit("accused", task_a, x, receipt_a, wrong),
            Exhibit("witness", task_w, x, receipt_w, right),
        ),
        note,
    )
    return _sign(evidence, receipt_a, "outputs")


def _sign(evidence: Evidence, receipt: Signed[Receipt], kind: str) -> VerdictFile:
    verdict = Verdict(
        auditor=AUDITOR.public_key,
        worker=receipt.message.worker,
        task_id=receipt.message.task_id,
        receipt_digest=receipt.digest,
        model_root=ROOT,
        agree=False,
        kind=kind,
        distance_micro=7_000_000,
        evidence=evidence.digest(),
        created_ms=NOW,
    )
    return VerdictFile(sign_message(AUDITOR, verdict), evidence)


def test_check_inputs_round_trip_and_answers() -> None:
    tokens = _tokens(5, 6, 7)
    _, receipt = _result(ACCUSED, PROMPT, {"token_ids": tokens}, 1, commitment=b"MAC1xyz")
    inputs = make_check_inputs(PROMPT, {"token_ids": tokens, "text": ["abc"]}, receipt.message)
    assert is_check(inputs) and not is_check(PROMPT)
    request = parse_check(inputs)
    assert request is not None
    assert request.inputs == PROMPT and request.token_ids == tokens
    assert (request.commitment, request.dtype) == (b"MAC1xyz", "float32")
    assert parse_check(PROMPT) is None
    assert read_check_answer(check_answer(True)) == (True, "")
    assert read_check_answer(check_answer(False, "bad")) == (False, "bad")
    assert len(read_check_answer(check_answer(False, "x" * 10_000))[1]) == 512


@pytest.mark.parametrize(
    "change",
    [
        {CHECK_TOKENS: None},
        {CHECK_TOKENS: Tensor("float32", (1,), bytes(4))},
        {CHECK_COMMITMENT: ["text"]},
        {CHECK_DTYPE: ["a", "b"]},
        {CHECK_DTYPE: ["x" * 100]},
    ],
)
def test_a_malformed_check_is_invalid_input(change: dict[str, object]) -> None:
    _, receipt = _result(ACCUSED, PROMPT, {"token_ids": _tokens(1)}, 1)
    inputs = make_check_inputs(PROMPT, {"token_ids": _tokens(1)}, receipt.message)
    for name, value in change.items():
        if value is None:
            del inputs[name]
        else:
            inputs[name] = value  # type: ignore[assignment]
    with pytest.raises(InvalidInput):
        parse_check(inputs)


def test_only_generations_can_be_checked_and_answers_must_be_answers() -> None:
    _, receipt = _result(ACCUSED, PROMPT, {"y": ["no tokens"]}, 1)
    with pytest.raises(VerificationError):
        make_check_inputs(PROMPT, {"y": ["no tokens"]}, receipt.message)
    for bad in ({"check": ["maybe"], "reason": [""]}, {"check": ["pass"]}, {"y": ["pass"]}):
        with pytest.raises(VerificationError):
            read_check_answer(bad)  # type: ignore[arg-type]


def test_a_verdict_file_round_trips_and_holds_offline() -> None:
    vf = _outputs_file()
    data = vf.encode()
    assert is_verdict_file(data) and not is_verdict_file(b"\x01\x02")
    again = decode_verdict_file(data)
    assert again == vf
    verify_verdict_file(again)
    assert len(vf.verdict.envelope) < 600  # small enough for gossip


def test_changed_evidence_no_longer_matches_the_verdict() -> None:
    vf = _outputs_file()
    other = dataclasses.replace(vf.evidence, note="something else")
    with pytest.raises(VerificationError, match="hash"):
        verify_verdict_file(VerdictFile(vf.verdict, other))


def test_the_accused_exhibit_must_be_the_judged_receipt() -> None:
    vf = _outputs_file()
    accused, witness = vf.evidence.exhibits
    swapped = Evidence(
        (
            dataclasses.replace(witness, role="accused"),
            dataclasses.replace(accused, role="witness"),
        ),
        vf.evidence.note,
    )
    forged = _sign(swapped, accused.receipt, "outputs")
    with pytest.raises(VerificationError):
        verify_verdict_file(forged)


def test_exhibits_must_answer_one_question_from_other_workers() -> None:
    vf = _outputs_file()
    accused, witness = vf.evidence.exhibits
    other_inputs: Values = {"x": Tensor("float32", (1,), struct.pack("<f", 3.0))}
    task, receipt = _result(WITNESS, other_inputs, witness.outputs, 3)
    elsewhere = Exhibit("witness", task, other_inputs, receipt, witness.outputs)
    with pytest.raises(VerificationError, match="different questions"):
        verify_verdict_file(_sign(Evidence((accused, elsewhere)), accused.receipt, "outputs"))
    task, receipt = _result(ACCUSED, accused.inputs, witness.outputs, 4)
    itself = Exhibit("witness", task, accused.inputs, receipt, witness.outputs)
    with pytest.raises(VerificationError, match="accused worker itself"):
        verify_verdict_file(_sign(Evidence((accused, itself)), accused.receipt, "outputs"))


def test_a_witness_whose_outputs_are_not_its_receipts_is_refused() -> None:
    vf = _outputs_file()
    accused, witness = vf.evidence.exhibits
    lying = dataclasses.replace(witness, outputs=accused.outputs)
    with pytest.raises(VerificationError, match="output_hash"):
        verify_verdict_file(_sign(Evidence((accused, lying)), accused.receipt, "outputs"))


def test_a_check_verdict_judges_a_check_answer_about_tokens_in_the_file() -> None:
    tokens = _tokens(1, 2, 3)
    generation: Values = {"token_ids": tokens}
    task_g, receipt_g = _result(WITNESS, PROMPT, generation, 1, commitment=b"C")
    check_inputs = make_check_inputs(PROMPT, generation, receipt_g.message)
    task_c, receipt_c = _result(ACCUSED, check_inputs, check_answer(False, "no"), 2)
    accused = Exhibit("accused", task_c, check_inputs, receipt_c, check_answer(False, "no"))
    witness = Exhibit("witness", task_g, PROMPT, receipt_g, generation)
    verify_verdict_file(_sign(Evidence((accused, witness)), receipt_c, "check"))
    with pytest.raises(VerificationError, match="check verdict"):
        verify_verdict_file(_sign(Evidence((accused, witness)), receipt_c, "outputs"))
    other: Values = {"token_ids": _tokens(9)}
    task_o, receipt_o = _result(WITNESS, PROMPT, other, 3, commitment=b"C")
    unrelated = Exhibit("witness", task_o, PROMPT, receipt_o, other)
    with pytest.raises(VerificationError, match="tokens no exhibit"):
        verify_verdict_file(_sign(Evidence((accused, unrelated)), receipt_c, "check"))


def test_malformed_evidence_is_refused() -> None:
    with pytest.raises(MalformedMessage):
        Evidence.from_wire({"exhibits": [], "note": ""})
    with pytest.raises(MalformedMessage):
        Evidence.from_wire({"exhibits": [{"role": "judge"}], "note": ""})
    with pytest.raises(MalformedMessage):
        decode_verdict_file(b"\x80")
    vf = _outputs_file()
    two_accused = Evidence(
        tuple(dataclasses.replace(e, role="accused") for e in vf.evidence.exhibits)
    )
    with pytest.raises(MalformedMessage):
        two_accused.accused  # noqa: B018
