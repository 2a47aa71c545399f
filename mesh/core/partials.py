"""The rules of a streamed answer: partials in order, and what they must add up to.

Sans-IO. A requester feeds each :class:`~mesh.core.messages.Partial` of one
answer to an :class:`AnswerStream`, which checks, partial by partial:

- ``task_id`` is the task's;
- ``seq`` counts 0, 1, 2... without gaps;
- seq 0 names the worker's runtime class (not empty); later partials leave it empty;

and at the final result (:meth:`AnswerStream.check_final`):

- the partials' ``token_ids``, concatenated, equal the final ``token_ids``, and
  their text deltas, concatenated, equal the final ``text`` exactly;
- the receipt's runtime claim names the runtime class seq 0 named (:data:`CLASS_KEYS`).

A break of these rules by a worker whose receipt verifies is a lie
(:class:`~mesh.errors.VerificationError`): it streamed what its own signed result
contradicts.

A stream may outlive one answer: when its worker goes away mid-stream, the
same signed task (same seed) runs again on another worker, and
:class:`StreamCursor` holds what the caller was already given. The new answer
must be of the same runtime class (else
:class:`~mesh.errors.OtherRuntimeClass`: try another worker) and reproduce every
token and character given so far, exactly (else
:class:`~mesh.errors.StreamDiverged`); only what extends them is new. So a
caller never sees a token twice, never misses one, and the tokens it saw are
those of the result that finally verifies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mesh.core.messages import STREAMED_OUTPUTS, Partial, RuntimeValue
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import OtherRuntimeClass, StreamDiverged, VerificationError

# The keys of a runtime claim that name its runtime class: what must be equal for two
# runs of one task to give identical tokens. They mirror mesh.runtime.device.runtime_class
# (a test keeps them in step). Other keys are per run (batch_size) or not about the
# computation at all (the node's price_micro), so they never make two classes.
CLASS_KEYS = ("device", "dtype", "torch", "deterministic", "threads", "batch_invariant", "cuda")

RuntimeClass = dict[str, RuntimeValue]
_S = TypeVar("_S", str, list[int])


def runtime_class(claim: Mapping[str, RuntimeValue]) -> RuntimeClass:
    """The runtime class a claim names: its :data:`CLASS_KEYS` entries."""
    return {k: claim[k] for k in CLASS_KEYS if k in claim}


def token_list(tensor: Tensor) -> list[int]:
    """The ids of a one-axis int64 tensor (little-endian bytes), as ints."""
    data = tensor.data
    return [int.from_bytes(data[i : i + 8], "little", signed=True) for i in range(0, len(data), 8)]


def token_tensor(ids: Sequence[int]) -> Tensor:
    """A one-axis int64 tensor of ``ids``."""
    data = b"".join(int(i).to_bytes(8, "little", signed=True) for i in ids)
    return Tensor("int64", (len(ids),), data)


@dataclass(frozen=True, slots=True)
class Piece:
    """What one partial adds: new token ids and the text they complete."""

    token_ids: tuple[int, ...]
    text: str


@dataclass
class AnswerStream:
    """The partials of one answer (one attempt on one worker), checked in order.

    Args:
        task_id: the task the answer is for.
    """

    task_id: bytes
    runtime: RuntimeClass | None = None
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    count: int = 0

    def add(self, partial: Partial) -> Piece:
        """Check the next partial and return what it adds.

        Raises:
            VerificationError: it belongs to another task, comes out of order, or
                names a runtime class where it must not (or none where it must).
        """
        if partial.task_id != self.task_id:
            raise VerificationError("a partial answer for another task")
        if partial.seq != self.count:
            raise VerificationError(f"partial answer {partial.seq} where {self.count} was due")
        if self.count == 0:
            if not partial.runtime:
                raise VerificationError("the first partial answer names no runtime class")
            self.runtime = dict(partial.runtime)
        elif partial.runtime:
            raise VerificationError("only the first partial answer names the runtime class")
        self.count += 1
        ids = partial.outputs["token_ids"]
        texts = partial.outputs["text"]
        assert isinstance(ids, Tensor) and isinstance(texts, list)  # StreamedOutputs checked
        piece = Piece(tuple(token_list(ids)), texts[0])
        self.token_ids.extend(piece.token_ids)
        self.text += piece.text
        return piece

    def check_final(self, outputs: Values, runtime: Mapping[str, RuntimeValue]) -> None:
        """Check the verified final outputs and runtime claim against the partials.

        Raises:
            VerificationError: the partials do not add up to the final outputs, or
                the receipt claims another runtime class than the first partial.
        """
        ids = outputs.get("token_ids")
        texts = outputs.get("text")
        if not isinstance(ids, Tensor) or ids.dtype != "int64" or len(ids.shape) != 1:
            raise VerificationError("a streamed result without a one-axis int64 token_ids")
        if not isinstance(texts, list) or len(texts) != 1:
            raise VerificationError("a streamed result without one text")
        if token_list(ids) != self.token_ids:
            raise VerificationError(
                f"the streamed token ids ({len(self.token_ids)}) are not the result's "
                f"({ids.shape[0]})"
            )
        if texts[0] != self.text:
            raise VerificationError("the streamed text is not the result's text")
        if self.count and runtime_class(runtime) != self.runtime:
            raise VerificationError("the receipt claims another runtime class than the stream")


@dataclass
class StreamCursor:
    """What a stream has given its caller, across the answers (attempts) it used.

    Attributes:
        runtime: the runtime class of the stream's first answer, once known.
        token_ids: every token id given, in order.
        text: every character given, in order.
    """

    runtime: RuntimeClass | None = None
    token_ids: list[int] = field(default_factory=list)
    text: str = ""

    def admit(self, answer: AnswerStream) -> None:
        """Accept ``answer``'s runtime class (call after its first partial).

        Raises:
            OtherRuntimeClass: the stream already gave tokens of another class.
        """
        assert answer.runtime is not None
        if self.runtime is None:
            self.runtime = dict(answer.runtime)
        elif answer.runtime != self.runtime:
            raise OtherRuntimeClass(
                "this worker runs another runtime class than the stream's first worker"
            )

    def advance(self, answer: AnswerStream, piece: Piece) -> Piece:
        """What ``piece`` (just added to ``answer``) gives beyond what was given.

        Raises:
            StreamDiverged: ``answer`` differs from what was given.
        """
        ids_before = len(answer.token_ids) - len(piece.token_ids)
        text_before = len(answer.text) - len(piece.text)
        fresh_ids = _fresh(self.token_ids, ids_before, list(piece.token_ids), "token ids")
        fresh_text = _fresh(self.text, text_before, piece.text, "text")
        self.token_ids.extend(fresh_ids)
        self.text += fresh_text
        return Piece(tuple(fresh_ids), fresh_text)

    def check_complete(self, answer: AnswerStream) -> None:
        """Everything given is ``answer``'s whole output (after its final check).

        Raises:
            StreamDiverged: more was given than ``answer`` holds.
        """
        if self.token_ids != answer.token_ids or self.text != answer.text:
            raise StreamDiverged(
                f"{len(self.token_ids)} tokens were given and the verified result holds "
                f"{len(answer.token_ids)} that do not extend them"
            )


def _fresh(given: _S, start: int, new: _S, what: str) -> _S:
    """The part of ``new`` (placed at ``start``) beyond ``given``; the rest must match."""
    overlap = max(0, min(len(given) - start, len(new)))
    if new[:overlap] != given[start : start + overlap]:
        raise StreamDiverged(
            f"a continuation's {what} differ from those already given at position {start}"
        )
    if start > len(given):  # cannot happen: answers start at 0 and grow by their pieces
        raise StreamDiverged(f"a gap in the streamed {what}")
    return new[overlap:]


__all__ = [
    "CLASS_KEYS",
    "STREAMED_OUTPUTS",
    "AnswerStream",
    "Piece",
    "StreamCursor",
    "runtime_class",
    "token_list",
    "token_tensor",
]
