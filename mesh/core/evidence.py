"""Verdict files: a signed verdict and the evidence it commits to, checkable offline.

A :class:`~mesh.core.messages.Verdict` is small enough for gossip because it
carries only the SHA-256 of its evidence; the evidence travels in a verdict file
(canonical MessagePack)::

    {"evidence": <evidence>, "kind": "verdict-file", "verdict": <verdict envelope map>}
    evidence = {"exhibits": [<exhibit>, ...], "note": str}
    exhibit  = {"inputs": <values>, "outputs": <values>, "receipt": <receipt envelope map>,
                "role": "accused" | "witness" | "checker", "task": <task envelope map>}

Every exhibit is a signed task, its inputs, a worker's signed receipt and the
outputs it covers. Roles:

- ``accused``: exactly one, the judged result (its receipt is the verdict's);
- ``witness``: an independent result of the same question (model, inputs,
  params): for an ``outputs`` verdict the results that agree with each other
  against the accused; for a ``check`` verdict the generation that was checked;
- ``checker``: an answer to a commitment check (:mod:`mesh.core.checks`) of a
  generation in the file.

:func:`verify_verdict_file` checks everything that holds without the model:
signatures, the evidence hash, every receipt's binding to its task and outputs,
that the exhibits ask one question and come from workers other than the
accused. Who is right is a question for the model: ``mesh verify VERDICT``
recomputes where the model is available.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.core import canonical, limits
from mesh.core.checks import CHECK_TOKENS, is_check, parse_check
from mesh.core.envelope import Signed, open_signed
from mesh.core.messages import Receipt, Task, Verdict
from mesh.core.receipts import verify_receipt
from mesh.core.tensors import Tensor
from mesh.core.values import Values, values_from_wire, values_hash, values_to_wire
from mesh.errors import InvalidInput, MalformedMessage, ProtocolError, VerificationError

FILE_KIND = "verdict-file"
ROLES = ("accused", "witness", "checker")
MAX_NOTE_CHARS = 2048
MAX_EXHIBITS = 8  # the accused, a few witnesses and checks: a tie-break needs at most ~5


@dataclass(frozen=True, slots=True)
class Exhibit:
    """One signed result in the evidence."""

    role: str
    task: Signed[Task]
    inputs: Values
    receipt: Signed[Receipt]
    outputs: Values

    def to_wire(self) -> dict[str, Any]:
        return {
            "inputs": values_to_wire(self.inputs),
            "outputs": values_to_wire(self.outputs),
            "receipt": self.receipt.to_wire(),
            "role": self.role,
            "task": self.task.to_wire(),
        }

    @classmethod
    def from_wire(cls, wire: Any) -> Exhibit:
        keys = {"inputs", "outputs", "receipt", "role", "task"}
        if not isinstance(wire, dict) or wire.keys() != keys:
            raise MalformedMessage(f"an exhibit is a map of exactly {sorted(keys)}")
        if wire["role"] not in ROLES:
            raise MalformedMessage(f"exhibit role must be one of {ROLES}")
        return cls(
            role=wire["role"],
            task=open_signed(wire["task"], Task),
            inputs=values_from_wire(wire["inputs"]),
            receipt=open_signed(wire["receipt"], Receipt),
            outputs=values_from_wire(wire["outputs"]),
        )


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a verdict rests on: signed results and a human note."""

    exhibits: tuple[Exhibit, ...]
    note: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"exhibits": [e.to_wire() for e in self.exhibits], "note": self.note}

    def encode(self) -> bytes:
        """Canonical bytes (what :meth:`digest` hashes)."""
        return canonical.encode(self.to_wire())

    def digest(self) -> bytes:
        """SHA-256 of the canonical evidence map: the verdict's ``evidence`` field."""
        return hashlib.sha256(self.encode()).digest()

    @property
    def accused(self) -> Exhibit:
        """The judged result. Raises MalformedMessage when there is not exactly one."""
        found = [e for e in self.exhibits if e.role == "accused"]
        if len(found) != 1:
            raise MalformedMessage("evidence must hold exactly one accused exhibit")
        return found[0]

    @classmethod
    def from_wire(cls, wire: Any) -> Evidence:
        if not isinstance(wire, dict) or wire.keys() != {"exhibits", "note"}:
            raise MalformedMessage("evidence is a map of exactly exhibits, note")
        exhibits, note = wire["exhibits"], wire["note"]
        if not isinstance(exhibits, list) or not 1 <= len(exhibits) <= MAX_EXHIBITS:
            raise MalformedMessage(f"evidence holds 1 to {MAX_EXHIBITS} exhibits")
        if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
            raise MalformedMessage(f"the note is a text of at most {MAX_NOTE_CHARS} characters")
        return cls(tuple(Exhibit.from_wire(e) for e in exhibits), note)


@dataclass(frozen=True, slots=True)
class VerdictFile:
    """A signed verdict with its evidence."""

    verdict: Signed[Verdict]
    evidence: Evidence

    def encode(self) -> bytes:
        """The file's bytes."""
        return canonical.encode(
            {
                "evidence": self.evidence.to_wire(),
                "kind": FILE_KIND,
                "verdict": self.verdict.to_wire(),
            }
        )


def is_verdict_file(data: bytes) -> bool:
    """True when ``data`` decodes as a map whose ``kind`` is a verdict file."""
    try:
        wire = canonical.decode(data)
    except ProtocolError:
        return False
    return isinstance(wire, dict) and wire.get("kind") == FILE_KIND


def decode_verdict_file(data: bytes, *, max_bytes: int = limits.MAX_MESSAGE_BYTES) -> VerdictFile:
    """Decode a verdict file (signatures checked, structure not: see :func:`verify_verdict_file`).

    Raises:
        MalformedMessage, TooLarge, BadSignature.
    """
    wire = canonical.decode(data, max_bytes=max_bytes)
    if not isinstance(wire, dict) or wire.keys() != {"evidence", "kind", "verdict"}:
        raise MalformedMessage("a verdict file is a map of exactly evidence, kind, verdict")
    if wire["kind"] != FILE_KIND:
        raise MalformedMessage(f"not a {FILE_KIND}")
    return VerdictFile(open_signed(wire["verdict"], Verdict), Evidence.from_wire(wire["evidence"]))


@dataclass(frozen=True, slots=True)
class Question:
    """What a result answers: the model, the input hash and the params."""

    model_root: bytes
    input_hash: bytes
    params: tuple[tuple[str, int], ...]


def question_of(exhibit: Exhibit) -> Question:
    """The question an exhibit answers (for a check: the question of the checked result).

    Raises:
        MalformedMessage: a check exhibit whose inputs are not a valid check.
    """
    task = exhibit.task.message
    params = tuple(sorted(task.params.items()))
    if exhibit.role != "checker":
        return Question(task.model_root, task.input_hash, params)
    try:
        request = parse_check(exhibit.inputs)
    except InvalidInput as exc:
        raise MalformedMessage(f"checker exhibit: {exc}") from exc
    if request is None:
        raise MalformedMessage("a checker exhibit must be a check task")
    return Question(task.model_root, values_hash(request.inputs), params)


def verify_verdict_file(vf: VerdictFile) -> None:
    """Check what a verdict file proves without the model (see the module docstring).

    Raises:
        VerificationError: the evidence does not hash to the verdict's, the accused
            exhibit is not the judged receipt, a receipt does not bind its task and
            outputs, the exhibits answer different questions, or a witness or
            checker is the accused worker itself.
        MalformedMessage: the evidence is not well formed.
    """
    verdict = vf.verdict.message
    if vf.evidence.digest() != verdict.evidence:
        raise VerificationError("the evidence does not hash to the verdict's evidence field")
    accused = vf.evidence.accused
    receipt = accused.receipt.message
    if accused.receipt.digest != verdict.receipt_digest:
        raise VerificationError("the accused exhibit is not the receipt the verdict judges")
    if receipt.worker != verdict.worker or receipt.task_id != verdict.task_id:
        raise VerificationError("the verdict names another worker or task than its receipt")
    if (verdict.kind == "check") != is_check(accused.inputs):
        raise VerificationError("a check verdict judges a check answer, and only it does")
    questions = set()
    for exhibit in vf.evidence.exhibits:
        _check_exhibit(exhibit, verdict.model_root)
        questions.add(question_of(_as_role(exhibit, verdict.kind)))
        if exhibit.role != "accused" and exhibit.receipt.message.worker == verdict.worker:
            raise VerificationError("a witness or checker is the accused worker itself")
    if len(questions) != 1:
        raise VerificationError("the exhibits answer different questions")
    for exhibit in vf.evidence.exhibits:
        checked = _checked_tokens(_as_role(exhibit, verdict.kind))
        if checked is not None and not any(
            e.outputs.get("token_ids") == checked for e in vf.evidence.exhibits
        ):
            raise VerificationError("a check in the evidence checks tokens no exhibit produced")


def _as_role(exhibit: Exhibit, kind: str) -> Exhibit:
    # In a check verdict the accused is itself a check answer.
    if exhibit.role == "accused" and kind == "check":
        return Exhibit("checker", exhibit.task, exhibit.inputs, exhibit.receipt, exhibit.outputs)
    return exhibit


def _checked_tokens(exhibit: Exhibit) -> Tensor | None:
    if exhibit.role != "checker":
        return None
    value = exhibit.inputs.get(CHECK_TOKENS)
    return value if isinstance(value, Tensor) else None


def _check_exhibit(exhibit: Exhibit, model_root: bytes) -> None:
    task = exhibit.task.message
    if task.model_root != model_root:
        raise VerificationError("an exhibit's task names another model than the verdict")
    if values_hash(exhibit.inputs) != task.input_hash:
        raise VerificationError("an exhibit's inputs do not match its task's input_hash")
    try:
        verify_receipt(exhibit.receipt, task=exhibit.task, outputs=exhibit.outputs)
    except ProtocolError as exc:
        raise VerificationError(f"an exhibit's receipt is inconsistent: {exc}") from exc


def exhibit_of(
    role: str,
    task: Signed[Task],
    inputs: Mapping[str, Any],
    receipt: Signed[Receipt],
    outputs: Mapping[str, Any],
) -> Exhibit:
    """An exhibit from a task, its inputs, a receipt and its outputs (copies the values)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    return Exhibit(role, task, dict(inputs), receipt, dict(outputs))
