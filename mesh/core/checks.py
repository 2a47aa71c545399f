"""Commitment checks as tasks: how a client asks a worker to check another's generation.

A language model's result is checked with one forward pass over the prompt and
the emitted tokens (``mesh.runtime.commitment.verify_task_outputs``: the
activation commitment and the seeded sampling), not by generating again. A
client that does not hold the model asks a second worker to run that check by
sending it an ordinary signed task on the same model whose inputs are the
original task's inputs plus three more::

    check_token_ids   int64 [n]   the emitted tokens to check (the result's ``token_ids``)
    check_commitment  uint8 [m]   the result's receipt commitment
    check_dtype       [str]       the run dtype that receipt claims (sets the tolerance)

and whose params are the original task's params (seed, max_tokens, sampling).
The checker answers with the outputs ``{"check": ["pass" | "fail"], "reason":
[text]}``, covered by its own receipt like any result, so a wrong answer to a
check is itself signed evidence.

The check names no worker: the checker learns the tokens and the commitment,
not whose they are. It does know it is checking (the extra inputs say so);
what must stay unpredictable is *which results get checked*, and that is
decided by the client after the first worker signed its receipt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mesh.core.messages import Receipt
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput, VerificationError

CHECK_TOKENS = "check_token_ids"
CHECK_COMMITMENT = "check_commitment"
CHECK_DTYPE = "check_dtype"
CHECK_INPUTS = (CHECK_TOKENS, CHECK_COMMITMENT, CHECK_DTYPE)
ANSWER = "check"
REASON = "reason"
PASS = "pass"
FAIL = "fail"
# A reason is a one-line diagnosis (CommitmentMismatch messages are ~100 chars).
MAX_REASON_CHARS = 512
MAX_DTYPE_CHARS = 32


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """A decoded check task.

    Attributes:
        inputs: the original task's inputs (the check inputs removed).
        token_ids: the emitted tokens to check (int64 [n]).
        commitment: the activation commitment bytes.
        dtype: the run dtype the checked receipt claims.
    """

    inputs: Values
    token_ids: Tensor
    commitment: bytes
    dtype: str


def is_check(inputs: Mapping[str, object]) -> bool:
    """True when ``inputs`` ask for a check (any of the check inputs is present)."""
    return any(name in inputs for name in CHECK_INPUTS)


def make_check_inputs(
    inputs: Mapping[str, Tensor | Sequence[str]],
    outputs: Mapping[str, Tensor | Sequence[str]],
    receipt: Receipt,
) -> Values:
    """The inputs of a task that checks ``outputs`` (answering ``inputs``) under ``receipt``.

    Raises:
        VerificationError: the outputs carry no int64 ``token_ids`` vector (not a
            generation), or the inputs already hold check inputs.
    """
    if is_check(inputs):
        raise VerificationError("a check of a check is not a thing")
    tokens = outputs.get("token_ids")
    if not isinstance(tokens, Tensor) or tokens.dtype != "int64" or len(tokens.shape) != 1:
        raise VerificationError("the result carries no int64 token_ids vector to check")
    dtype = receipt.runtime.get("dtype")
    checked: Values = {k: v if isinstance(v, Tensor) else list(v) for k, v in inputs.items()}
    checked[CHECK_TOKENS] = tokens
    checked[CHECK_COMMITMENT] = Tensor("uint8", (len(receipt.commitment),), receipt.commitment)
    checked[CHECK_DTYPE] = [dtype if isinstance(dtype, str) else ""]
    return checked


def parse_check(inputs: Values) -> CheckRequest | None:
    """The check a task's inputs ask for, or None for an ordinary task.

    Raises:
        InvalidInput: some but not all check inputs, or one of the wrong type.
    """
    present = [name for name in CHECK_INPUTS if name in inputs]
    if not present:
        return None
    if len(present) != len(CHECK_INPUTS):
        raise InvalidInput(f"a check needs all of {', '.join(CHECK_INPUTS)}")
    tokens, commitment, dtype = (inputs[name] for name in CHECK_INPUTS)
    if not isinstance(tokens, Tensor) or tokens.dtype != "int64" or len(tokens.shape) != 1:
        raise InvalidInput(f"{CHECK_TOKENS} must be an int64 vector")
    if not isinstance(commitment, Tensor) or commitment.dtype != "uint8":
        raise InvalidInput(f"{CHECK_COMMITMENT} must be a uint8 vector")
    if isinstance(dtype, Tensor) or len(dtype) != 1 or len(dtype[0]) > MAX_DTYPE_CHARS:
        raise InvalidInput(f"{CHECK_DTYPE} must be one short text")
    original = {k: v for k, v in inputs.items() if k not in CHECK_INPUTS}
    return CheckRequest(original, tokens, commitment.data, dtype[0])


def check_answer(passed: bool, reason: str = "") -> Values:
    """The outputs a checker answers with."""
    return {ANSWER: [PASS if passed else FAIL], REASON: [reason[:MAX_REASON_CHARS]]}


def read_check_answer(outputs: Mapping[str, Tensor | Sequence[str]]) -> tuple[bool, str]:
    """(passed, reason) from a checker's outputs.

    Raises:
        VerificationError: the outputs are not a check answer.
    """
    answer, reason = outputs.get(ANSWER), outputs.get(REASON)
    if (
        set(outputs) != {ANSWER, REASON}
        or isinstance(answer, Tensor)
        or isinstance(reason, Tensor)
        or answer is None
        or reason is None
        or len(answer) != 1
        or len(reason) != 1
        or answer[0] not in (PASS, FAIL)
    ):
        raise VerificationError("the answer is not a check answer")
    return answer[0] == PASS, reason[0]
