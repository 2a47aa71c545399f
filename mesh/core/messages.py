"""The message kinds of the mesh and the request/response of ``/mesh/task/1.0.0``.

Signed kinds (each travels in an envelope, see :mod:`mesh.core.envelope`):

======================  =================== ===========  ==============================
class                   type string         signer       purpose
======================  =================== ===========  ==============================
:class:`Task`           ``mesh/task/v1``    ``client``   what to run, on which model
:class:`Receipt`        ``mesh/receipt/v1`` ``worker``   what was run, chained per worker
:class:`CapacityRecord` ``mesh/capacity/v1`` ``peer``    a node's advert in the DHT
:class:`Verdict`        ``mesh/verdict/v1`` ``auditor``  an audit's outcome
======================  =================== ===========  ==============================

On a task stream the client sends one request and gets one response::

    request = {"inputs": <values>, "kind": "task", "task": <task envelope map>
               [, "stream": true]}
    result  = {"kind": "result", "outputs": <values>, "receipt": <receipt envelope map>}
    error   = {"code": str, "kind": "error", "message": str, "retry_after_ms": int,
               "task_id": bin (0 or 32 bytes)}

A task's id is the SHA-256 of its envelope bytes (``Signed.digest``).

Streaming. A request with ``"stream": true`` asks for partial answers: for a
generation, :class:`Partial` messages (framed as partial, see
:mod:`mesh.core.framing`) travel before the final result or error::

    partial = {"kind": "partial", "outputs": {"text": [delta], "token_ids": int64 [k]},
               "runtime": <runtime class, in seq 0 only>, "seq": int, "task_id": bin 32}

The rules a requester checks are in :mod:`mesh.core.partials`: ``seq`` counts
0, 1, 2...; seq 0 names the worker's runtime class; the concatenation of the
partials' ``token_ids`` and texts equals the final ``token_ids`` and text
exactly. The receipt binds the final outputs as for any task, so a streamed
result verifies like a non-streamed one; partials themselves are not signed
and are provisional until that result verifies.

Why ``stream`` is a request field and not a field of the signed task: it asks
for a way of delivery on one Noise-authenticated stream, not for a different
computation (the outputs, the receipt and their hashes are the same either
way). Outside the signature, the same signed task (same id, same seed) can be
re-sent to another worker as a continuation of a broken stream, or as a plain
request by the verification layer, and every task signed before streaming
existed keeps its bytes. A worker streams only when the request says so, and a
request without the field is byte-for-byte what it was before. ``false`` is
not written (one canonical encoding per request): the field is absent or true.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from mesh.core import canonical, limits
from mesh.core.envelope import Signed, SignedMessage, open_signed
from mesh.core.schema import (
    I64_MIN,
    U64_MAX,
    AnyOf,
    Bool,
    Bytes,
    Int,
    Kind,
    List,
    Map,
    OneOfBytes,
    Str,
    WireMessage,
)
from mesh.core.tensors import Tensor
from mesh.core.values import Values, values_from_wire, values_hash, values_to_wire
from mesh.errors import (
    ERROR_CODES,
    Busy,
    InternalError,
    MalformedMessage,
    ProtocolError,
)

TASK_TYPE = "mesh/task/v1"
RECEIPT_TYPE = "mesh/receipt/v1"
CAPACITY_TYPE = "mesh/capacity/v1"
VERDICT_TYPE = "mesh/verdict/v1"

VERIFY_MODES = ("signature", "audit", "redundant")
# The task param that makes a task a batch of that many items (mesh.core.batch).
BATCH_PARAM = "batch_items"
VERDICT_KINDS = ("outputs", "commitment", "check")

# Caps on fields; generous for honest peers, small enough to bound a decoder.
MAX_PARAMS = 16
MAX_PARAM_KEY_CHARS = 32
MAX_RUNTIME_ENTRIES = 32
MAX_RUNTIME_KEY_BYTES = 32
MAX_RUNTIME_VALUE_BYTES = 256
# LM activation commitments are ~8 B/token (TOPLOC); 64 KiB covers 8k tokens.
MAX_COMMITMENT_BYTES = 64 * 1024
MAX_ADDRS = 16
MAX_ADDR_BYTES = 256
MAX_MODELS = 64
MAX_MODEL_NAME_BYTES = 128
MAX_LABEL_BYTES = 128  # device and region strings
MAX_ERROR_MESSAGE_BYTES = 1024

# Field kinds shared by several messages.
Key = Annotated[bytes, Bytes(32)]
Hash = Annotated[bytes, Bytes(32)]
Millis = Annotated[int, Int(0)]
Count = Annotated[int, Int(0)]
Label = Annotated[str, Str(MAX_LABEL_BYTES)]


@dataclass(frozen=True, slots=True)
class Task(SignedMessage):
    """An inference task, signed by the client."""

    TYPE: ClassVar[str] = TASK_TYPE
    SIGNER: ClassVar[str] = "client"

    client: Key
    nonce: Annotated[bytes, Bytes(16)]
    created_ms: Millis
    expires_ms: Millis
    model_root: Hash
    input_hash: Hash
    params: Annotated[
        dict[str, int],
        Map(Int(I64_MIN, U64_MAX), max_items=MAX_PARAMS, max_key_bytes=MAX_PARAM_KEY_CHARS),
    ]
    verify: Annotated[str, Str(16, choices=VERIFY_MODES)]
    target: Annotated[bytes, OneOfBytes(0, 32)]  # a worker's public key, or b"" for any


RuntimeValue = str | int | bool


@dataclass(frozen=True, slots=True)
class Receipt(SignedMessage):
    """What a worker ran for a task, signed by the worker and chained by ``seq``/``prev``."""

    TYPE: ClassVar[str] = RECEIPT_TYPE
    SIGNER: ClassVar[str] = "worker"

    task_id: Hash
    worker: Key
    # The task's client key (the task's signer): who the work was done for, so a
    # worker's receipt log alone tells per-client accounting (``mesh receipts``).
    client: Key
    seq: Count
    prev: Hash  # digest of the previous receipt's envelope; zeros for seq 0
    model_root: Hash
    runtime: Annotated[
        dict[str, RuntimeValue],
        Map(
            AnyOf(Bool(), Int(I64_MIN, U64_MAX), Str(MAX_RUNTIME_VALUE_BYTES)),
            max_items=MAX_RUNTIME_ENTRIES,
            max_key_bytes=MAX_RUNTIME_KEY_BYTES,
        ),
    ]
    output_hash: Hash
    started_ms: Millis
    finished_ms: Millis
    commitment: Annotated[bytes, Bytes(0, MAX_COMMITMENT_BYTES)]


@dataclass(frozen=True, slots=True)
class CapacityRecord(SignedMessage):
    """A node's signed advert: what it serves, how loaded it is, until when."""

    TYPE: ClassVar[str] = CAPACITY_TYPE
    SIGNER: ClassVar[str] = "peer"

    peer: Key
    addrs: Annotated[tuple[str, ...], List(Str(MAX_ADDR_BYTES), MAX_ADDRS)]
    models: Annotated[tuple[bytes, ...], List(Bytes(32), MAX_MODELS)]
    model_names: Annotated[tuple[str, ...], List(Str(MAX_MODEL_NAME_BYTES), MAX_MODELS)]
    device: Label
    memory_free_mb: Count
    queue_depth: Count
    queue_capacity: Count
    throughput_milli: Count  # tasks per second x 1000
    price_micro: Count  # price per task in micro-units
    region: Label
    created_ms: Millis
    expires_ms: Millis
    # True in the short-lived record a node publishes when it starts draining
    # (shutting down): clients drop it from their view at once instead of
    # waiting for the last normal record to expire (mesh.node.departure).
    draining: Annotated[bool, Bool()] = False


@dataclass(frozen=True, slots=True)
class Verdict(SignedMessage):
    """An auditor's judgement of one receipt, committing to the evidence behind it.

    Small enough for gossip (~480 bytes signed): the evidence itself (the tasks,
    inputs, receipts and outputs it rests on) lives in a verdict file
    (:mod:`mesh.core.evidence`) whose SHA-256 is ``evidence``, so anyone holding
    the file can re-check the judgement offline.

    Attributes:
        auditor: the key of whoever judged (a client).
        worker: the judged receipt's signer.
        task_id: the judged receipt's task.
        receipt_digest: the judged receipt's envelope digest.
        model_root: the model the task names.
        agree: True when the receipt's result was confirmed, False when found wrong.
        kind: what was judged (:data:`VERDICT_KINDS`): ``outputs`` against
            independent runs of the same task; ``commitment``, a generation
            against its activation commitment and sampling; ``check``, a
            worker's answer to a commitment check against a re-check.
        distance_micro: how far the judged outputs were from the confirmed ones,
            x 1e6 (0 where no distance applies).
        evidence: SHA-256 of the canonical evidence map.
        created_ms: when the verdict was made.
    """

    TYPE: ClassVar[str] = VERDICT_TYPE
    SIGNER: ClassVar[str] = "auditor"

    auditor: Key
    worker: Key
    task_id: Hash
    receipt_digest: Hash
    model_root: Hash
    agree: Annotated[bool, Bool()]
    kind: Annotated[str, Str(16, choices=VERDICT_KINDS)]
    distance_micro: Count
    evidence: Hash
    created_ms: Millis


@dataclass(frozen=True, slots=True)
class ErrorReply(WireMessage):
    """A typed refusal or failure, answered instead of a result."""

    WIRE_CONSTANTS: ClassVar[Mapping[str, Any]] = {"kind": "error"}

    code: Annotated[str, Str(32, choices=tuple(ERROR_CODES))]
    message: Annotated[str, Str(MAX_ERROR_MESSAGE_BYTES)]
    retry_after_ms: Millis
    task_id: Annotated[bytes, OneOfBytes(0, 32)]  # empty when the task is unknown

    @classmethod
    def from_exception(cls, exc: BaseException, *, task_id: bytes = b"") -> ErrorReply:
        """The reply for a caught exception; anything not a ProtocolError is "internal".

        Only a ProtocolError's own message is sent: other exceptions may hold
        local details (paths, tracebacks) that the peer has no business seeing.
        """
        if isinstance(exc, ProtocolError):
            code, message = exc.code, str(exc)
        else:
            code, message = InternalError.code, "internal error"
        retry = exc.retry_after_ms if isinstance(exc, Busy) else 0
        encoded = message.encode("utf-8")[:MAX_ERROR_MESSAGE_BYTES]
        return cls(
            code=code,
            message=encoded.decode("utf-8", errors="ignore"),
            retry_after_ms=max(0, retry),
            task_id=task_id,
        )

    def to_exception(self) -> ProtocolError:
        """The ProtocolError subclass matching ``code`` (Busy keeps retry_after_ms)."""
        if self.code == Busy.code:
            return Busy(self.message, retry_after_ms=self.retry_after_ms)
        return ERROR_CODES.get(self.code, InternalError)(self.message)

    def encode(self) -> bytes:
        """The canonical bytes of this reply."""
        return canonical.encode(self.to_wire())


class StreamedOutputs(Kind):
    """A partial's outputs: exactly ``token_ids`` (int64, one axis) and ``text`` (one string).

    Accepts the wire form (a tensor map) or a :class:`Tensor`; holds a Tensor.
    """

    _text = Str(limits.MAX_STRING_BYTES)

    def coerce(self, name: str, value: Any) -> Any:
        if not isinstance(value, Mapping) or set(value) != set(STREAMED_OUTPUTS):
            raise MalformedMessage(f"field {name!r} must map exactly {list(STREAMED_OUTPUTS)}")
        ids = value["token_ids"]
        if isinstance(ids, dict):
            ids = Tensor.from_wire(ids)
        if not isinstance(ids, Tensor) or ids.dtype != "int64" or len(ids.shape) != 1:
            raise MalformedMessage(f"{name}.token_ids must be a one-axis int64 tensor")
        text = value["text"]
        if not isinstance(text, (list, tuple)) or len(text) != 1:
            raise MalformedMessage(f"{name}.text must be a list of one string")
        return {"text": [self._text.coerce(f"{name}.text", text[0])], "token_ids": ids}

    def to_wire(self, value: Any) -> Any:
        return values_to_wire(value)


# The outputs a generation streams, named as in its final outputs.
STREAMED_OUTPUTS = ("text", "token_ids")


@dataclass(frozen=True, slots=True)
class Partial(WireMessage):
    """One chunk of a streamed result, sent before the final result (see the module docstring).

    Attributes:
        task_id: the task it belongs to.
        seq: 0 for the first partial of an answer, then 1, 2...
        runtime: the worker's runtime class (its runtime claim without the
            per-run ``batch_size``) in seq 0; empty in later partials.
        outputs: new ``token_ids`` and the ``text`` they complete (a delta).
    """

    WIRE_CONSTANTS: ClassVar[Mapping[str, Any]] = {"kind": "partial"}

    task_id: Hash
    seq: Count
    runtime: Annotated[
        dict[str, RuntimeValue],
        Map(
            AnyOf(Bool(), Int(I64_MIN, U64_MAX), Str(MAX_RUNTIME_VALUE_BYTES)),
            max_items=MAX_RUNTIME_ENTRIES,
            max_key_bytes=MAX_RUNTIME_KEY_BYTES,
        ),
    ]
    outputs: Annotated[Values, StreamedOutputs()]

    def encode(self) -> bytes:
        """The canonical bytes of this partial."""
        return canonical.encode(self.to_wire())


def decode_partial(data: bytes, *, max_bytes: int = limits.MAX_MESSAGE_BYTES) -> Partial:
    """Decode a partial answer.

    Raises:
        MalformedMessage, TooLarge.
    """
    return Partial.from_wire(canonical.decode(data, max_bytes=max_bytes))


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded task request: the verified signed task, its inputs, and whether to stream.

    Attributes:
        task: the signed task.
        inputs: its inputs.
        stream: the requester asked for partial answers (see the module docstring).
    """

    task: Signed[Task]
    inputs: Values
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """A decoded successful response: the verified signed receipt and the outputs."""

    receipt: Signed[Receipt]
    outputs: Values


def encode_request(
    task: Signed[Task], inputs: Mapping[str, Tensor | Sequence[str]], *, stream: bool = False
) -> bytes:
    """The request message for a signed task and its inputs (``stream``: ask for partials)."""
    wire: dict[str, Any] = {
        "inputs": values_to_wire(inputs),
        "kind": "task",
        "task": task.to_wire(),
    }
    if stream:
        wire["stream"] = True
    return canonical.encode(wire)


def decode_request(data: bytes, *, max_bytes: int = limits.MAX_MESSAGE_BYTES) -> Request:
    """Decode a request, verify the task's signature and that the inputs match it.

    Time, window and replay are checked separately (:func:`mesh.core.replay.admit_task`).

    Raises:
        MalformedMessage, TooLarge, BadSignature.
    """
    return request_from_wire(canonical.decode(data, max_bytes=max_bytes))


def request_from_wire(wire: Any) -> Request:
    """:func:`decode_request` on an already decoded message (mesh.core.batch dispatches).

    Raises:
        MalformedMessage, TooLarge, BadSignature.
    """
    streamed = isinstance(wire, dict) and "stream" in wire
    if streamed:
        if wire["stream"] is not True:  # absent or true: one encoding per request
            raise MalformedMessage("a request's stream field is true or absent")
        wire = {k: v for k, v in wire.items() if k != "stream"}
    wire = _check_kind(wire, "task", {"inputs", "kind", "task"})
    task = open_signed(wire["task"], Task)
    inputs = values_from_wire(wire["inputs"])
    if values_hash(inputs) != task.message.input_hash:
        raise MalformedMessage("inputs do not match the task's input_hash")
    return Request(task, inputs, stream=streamed)


def encode_result(receipt: Signed[Receipt], outputs: Mapping[str, Tensor | Sequence[str]]) -> bytes:
    """The success response: outputs and the signed receipt that covers them."""
    return canonical.encode(
        {"kind": "result", "outputs": values_to_wire(outputs), "receipt": receipt.to_wire()}
    )


def decode_response(
    data: bytes, *, max_bytes: int = limits.MAX_MESSAGE_BYTES
) -> Result | ErrorReply:
    """Decode a response: a :class:`Result` (receipt signature verified) or an ErrorReply.

    The receipt's binding to the task and outputs is checked by
    :func:`mesh.core.receipts.verify_receipt`.

    Raises:
        MalformedMessage, TooLarge, BadSignature.
    """
    wire = canonical.decode(data, max_bytes=max_bytes)
    if isinstance(wire, dict) and wire.get("kind") == "error":
        return ErrorReply.from_wire(wire)
    wire = _check_kind(wire, "result", {"kind", "outputs", "receipt"})
    receipt = open_signed(wire["receipt"], Receipt)
    return Result(receipt, values_from_wire(wire["outputs"]))


def _check_kind(wire: Any, kind: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(wire, dict) or wire.keys() != keys or wire["kind"] != kind:
        raise MalformedMessage(f"a {kind} message is a map of exactly {sorted(keys)}")
    return wire
