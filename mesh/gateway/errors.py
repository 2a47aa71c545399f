"""HTTP errors in OpenAI's shape, and the mesh's errors mapped onto them.

Every error the gateway answers is ``{"error": {"message", "type", "param",
"code"}}`` with an HTTP status, as OpenAI's API answers, so its client
libraries raise their usual exceptions (``BadRequestError``,
``AuthenticationError``, ``NotFoundError``, ``RateLimitError``, ...).

The mesh's error tree (:mod:`mesh.errors`) maps explicitly, class by class
(:data:`MESH_ERRORS`, most specific first); anything else is a 500:

=======================  ======  ===========================================
mesh error               status  why
=======================  ======  ===========================================
InvalidInput, TooLarge   400     the request's content does not fit the model
UnknownModel, ModelError 404     no such model (here or at the peers)
Busy                     429     every peer tried answered busy
VerificationError        502     workers' results did not verify
StreamError              502     a stream could not go on as it began (only
                                 ever after its first chunk: an error event)
InternalError            502     the worker failed running a valid task
MalformedMessage,        502     a peer refused the gateway's own signed task
BadSignature, Expired,           (a peer's fault or a clock far off: not the
Replayed, ProtocolError          caller's request)
NoPeersAvailable,        503     nobody live serves the model, or could be
PeerUnavailable,                 reached
NetworkError
DeadlineExceeded         504     no verified result within the deadline
Closed                   503     the gateway is shutting down (its client closed)
KeyFileError,            500     the gateway itself is misconfigured
ConfigError
=======================  ======  ===========================================
"""

from __future__ import annotations

import math
from typing import Any

from mesh.errors import (
    BadSignature,
    Busy,
    Closed,
    ConfigError,
    DeadlineExceeded,
    Expired,
    InternalError,
    InvalidInput,
    KeyFileError,
    MalformedMessage,
    MeshError,
    ModelError,
    NetworkError,
    NoPeersAvailable,
    PeerUnavailable,
    ProtocolError,
    Replayed,
    StreamError,
    TooLarge,
    UnknownModel,
    VerificationError,
)

# OpenAI's error types.
INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
RATE_LIMIT = "rate_limit_error"
SERVER = "server_error"
SERVICE_UNAVAILABLE = "service_unavailable_error"
TIMEOUT = "timeout_error"


class ApiError(MeshError):
    """An answer in OpenAI's error shape.

    Args:
        status: the HTTP status.
        message: for people.
        type: OpenAI's error type (``invalid_request_error``, ...).
        code: a stable machine-readable code (``model_not_found``, ...).
        param: the request field at fault, when there is one.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's clients read."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 ``invalid_request_error``."""
    return ApiError(400, message, param=param, code=code or "invalid_value")


def unsupported(param: str, why: str) -> ApiError:
    """A 400 for a parameter the mesh cannot honour (refused, never ignored)."""
    return ApiError(400, f"{param}: {why}", param=param, code="unsupported_parameter")


# (mesh error class, status, type, code), most specific first: the first match wins.
MESH_ERRORS: tuple[tuple[type[MeshError], int, str, str], ...] = (
    (InvalidInput, 400, INVALID_REQUEST, "invalid_input"),
    (TooLarge, 400, INVALID_REQUEST, "too_large"),
    (UnknownModel, 404, INVALID_REQUEST, "model_not_found"),
    (ModelError, 404, INVALID_REQUEST, "model_not_found"),
    (Busy, 429, RATE_LIMIT, "mesh_busy"),
    (VerificationError, 502, SERVER, "verification_failed"),
    (StreamError, 502, SERVER, "stream_failed"),
    (InternalError, 502, SERVER, "worker_failed"),
    (MalformedMessage, 502, SERVER, "task_refused"),
    (BadSignature, 502, SERVER, "task_refused"),
    (Expired, 502, SERVER, "task_refused"),
    (Replayed, 502, SERVER, "task_refused"),
    (ProtocolError, 502, SERVER, "peer_error"),
    (DeadlineExceeded, 504, TIMEOUT, "deadline_exceeded"),
    (NoPeersAvailable, 503, SERVICE_UNAVAILABLE, "no_peers"),
    (PeerUnavailable, 503, SERVICE_UNAVAILABLE, "peers_unreachable"),
    (NetworkError, 503, SERVICE_UNAVAILABLE, "network_error"),
    (Closed, 503, SERVICE_UNAVAILABLE, "shutting_down"),
    (KeyFileError, 500, SERVER, "gateway_misconfigured"),
    (ConfigError, 500, SERVER, "gateway_misconfigured"),
)


def from_mesh_error(exc: MeshError) -> ApiError:
    """The HTTP answer for an error the mesh raised (see the table above)."""
    if isinstance(exc, ApiError):
        return exc
    for cls, status, kind, code in MESH_ERRORS:
        if isinstance(exc, cls):
            headers = {}
            if isinstance(exc, Busy):
                # Retry-After is in whole seconds; round up so a client never comes back early.
                headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_ms / 1000)))
            return ApiError(status, str(exc), type=kind, code=code, headers=headers)
    return ApiError(500, f"internal error: {exc}", type=SERVER, code="internal_error")
