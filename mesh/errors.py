"""One error tree for the whole mesh.

Every exception the mesh raises derives from :class:`MeshError`. Exceptions from
libraries (msgpack, nacl, libp2p, torch) are translated where they are caught,
with ``raise ... from exc`` so the cause is kept.

    MeshError
    ├── ProtocolError            a message from the wire broke a rule; has ``code``
    │   ├── MalformedMessage     "malformed": undecodable, wrong types, non-canonical
    │   ├── TooLarge             "too-large": over a named cap
    │   ├── BadSignature         "bad-signature": signature or signer does not check
    │   ├── Expired              "expired": outside its validity window
    │   ├── Replayed             "replayed": a nonce seen before
    │   ├── UnknownModel         "unknown-model": the peer does not serve this model_root
    │   ├── InvalidInput         "invalid-input": inputs do not fit the model's schema
    │   ├── Busy                 "busy": admission queue full; has ``retry_after_ms``
    │   └── InternalError        "internal": the peer failed running a valid task
    ├── VerificationError        a receipt or result does not prove what it claims
    │   ├── OutputMismatch       output hash differs from the receipt's
    │   ├── TaskMismatch         receipt bound to another task
    │   ├── CommitmentMismatch   activation commitment / sampling check failed
    │   └── Disputed             independent workers disagree and nothing settled who is right
    ├── StreamError              a token stream cannot go on as it began (tokens were given)
    │   ├── StreamDiverged       a worker's tokens differ from those the stream already gave
    │   ├── StreamInterrupted    its worker went away mid-stream and no other could continue it
    │   └── OtherRuntimeClass    a continuation's worker runs another runtime class (tried next)
    ├── KeyFileError             key file missing, unreadable, bad mode, exists
    ├── ModelError               zoo, manifest or weights problem (root mismatch, ...)
    ├── ConfigError              bad bootstrap line, bad option
    ├── NetworkError             transport trouble
    │   ├── PeerUnavailable      dial or stream failed; broken by the peer, or it is dead or frozen
    │   ├── DeadlineExceeded     a call ran past its deadline
    │   └── NoPeersAvailable     nobody live serves the model (within the deadline)
    └── Closed                   used after its owner closed it (a client, a network):
                                 closed by us, where PeerUnavailable is broken by the peer

``ProtocolError`` subclasses map one-to-one onto the ``ErrorReply`` codes that
travel on the wire (see :data:`ERROR_CODES`), so a node answers with the code of
the exception it caught, and a client raises the matching class on receipt.
"""

from __future__ import annotations


class MeshError(Exception):
    """Root of every error the mesh raises."""


class ProtocolError(MeshError):
    """A message broke a protocol rule. ``code`` is its wire code."""

    code: str = "internal"

    def __init__(self, message: str = "", *, detail: str | None = None) -> None:
        super().__init__(message or self.code)
        self.detail = detail if detail is not None else (message or self.code)


class MalformedMessage(ProtocolError):
    code = "malformed"


class TooLarge(ProtocolError):
    code = "too-large"


class BadSignature(ProtocolError):
    code = "bad-signature"


class Expired(ProtocolError):
    code = "expired"


class Replayed(ProtocolError):
    code = "replayed"


class UnknownModel(ProtocolError):
    code = "unknown-model"


class InvalidInput(ProtocolError):
    code = "invalid-input"


class Busy(ProtocolError):
    code = "busy"

    def __init__(self, message: str = "", *, retry_after_ms: int = 0) -> None:
        super().__init__(message or f"busy, retry after {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms


class InternalError(ProtocolError):
    code = "internal"


ERROR_CODES: dict[str, type[ProtocolError]] = {
    cls.code: cls
    for cls in (
        MalformedMessage,
        TooLarge,
        BadSignature,
        Expired,
        Replayed,
        UnknownModel,
        InvalidInput,
        Busy,
        InternalError,
    )
}


class VerificationError(MeshError):
    """A receipt or result does not prove what it claims."""


class OutputMismatch(VerificationError):
    """The output's hash differs from the one the receipt signs."""


class TaskMismatch(VerificationError):
    """The receipt is bound to another task."""


class CommitmentMismatch(VerificationError):
    """An activation commitment or the sampling of tokens does not check."""


class Disputed(VerificationError):
    """Independent workers gave results that disagree, and no tie-breaker settled it.

    Raised instead of returning any of them: none is known to be right.
    """


class StreamError(MeshError):
    """A token stream cannot go on without changing what it already gave its caller.

    Streamed chunks are provisional until the stream ends with a verified
    result; these errors say why a stream ended without one after it had
    started giving tokens (before the first chunk, a stream fails with the
    errors :meth:`mesh.AsyncClient.run` raises).
    """


class StreamDiverged(StreamError):
    """A continuation streamed tokens that differ from those the stream already gave.

    The stream's first worker went away (or was caught lying) after some tokens
    were given; another worker of the same runtime class re-ran the same signed
    task (same seed) and did not reproduce them. One of the two is wrong, and
    nothing signed says which (partial answers carry no signature): the stream
    stops rather than change tokens its caller already has.
    """


class StreamInterrupted(StreamError):
    """The stream's worker went away mid-stream and no worker could continue it.

    ``yielded`` tokens were given before; the cause (``__cause__``) says why the
    continuation failed (no other worker of the runtime class, the deadline).
    """

    def __init__(self, message: str, *, yielded: int = 0) -> None:
        super().__init__(message)
        self.yielded = yielded


class OtherRuntimeClass(StreamError):
    """A continuation's worker runs another runtime class than the stream's first worker.

    Its tokens need not equal those already given, so the continuation moves on
    to another worker (the retry plan counts it as "not here").
    """


class KeyFileError(MeshError):
    """A key file is missing, unreadable, readable by others, or already exists."""


class ModelError(MeshError):
    """A zoo entry, manifest or weight file is wrong (for example a root mismatch)."""


class ConfigError(MeshError):
    """Bad configuration: a bootstrap line, an option, a zoo folder."""


class NetworkError(MeshError):
    """Transport trouble talking to a peer."""


class PeerUnavailable(NetworkError):
    """A dial or stream to a peer failed: it is dead, frozen or unreachable."""


class DeadlineExceeded(NetworkError):
    """A call ran past its deadline."""


class NoPeersAvailable(NetworkError):
    """No live peer serves the model within the deadline."""


class Closed(MeshError):
    """Used after its owner closed it (a client, a network): closed by us, not by a peer."""
