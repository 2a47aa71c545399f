"""The ASGI app (starlette): routes, API keys, body caps, deadlines, errors as JSON.

Routes (OpenAI's paths and shapes):

- ``GET /v1/models``
- ``POST /v1/embeddings``
- ``POST /v1/completions``
- ``POST /v1/chat/completions``

Every answer is JSON, or with ``stream: true`` server-sent events
(:mod:`mesh.gateway.streaming`); every error is in OpenAI's shape
(:mod:`mesh.gateway.errors`), including unknown paths (404) and methods (405).
The app runs on trio (hypercorn's trio worker): handlers await the shared mesh
client directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mesh.errors import MeshError
from mesh.gateway.auth import ApiKeys
from mesh.gateway.config import DEADLINE_SLACK_S, GatewayConfig
from mesh.gateway.errors import SERVER, TIMEOUT, ApiError, bad_request, from_mesh_error
from mesh.gateway.evidence import VERIFY_HEADER
from mesh.gateway.schemas import choose_verify, parse_chat, parse_completion, parse_embeddings
from mesh.gateway.service import Gateway, Reply
from mesh.gateway.sse import MEDIA_TYPE
from mesh.gateway.streaming import StreamReply

logger = logging.getLogger(__name__)

# A handler gets the decoded JSON body (None for GET) and the X-Mesh-Verify header.
Call = Callable[[Any, str | None], Awaitable[Reply | StreamReply]]


def build_app(gateway: Gateway, config: GatewayConfig) -> Starlette:
    """The gateway's ASGI app over ``gateway``, with ``config``'s keys, caps and deadline."""
    keys = ApiKeys(config.api_keys) if config.api_keys is not None else None

    async def models(body: Any, verify: str | None) -> Reply:
        choose_verify(verify, None)  # listing runs no task, but a bad mode is still refused
        return await gateway.models()

    async def embeddings(body: Any, verify: str | None) -> Reply:
        request = parse_embeddings(body)
        return await gateway.embeddings(request, verify=choose_verify(verify, request.verify))

    async def completions(body: Any, verify: str | None) -> Reply | StreamReply:
        request = parse_completion(body)
        return await gateway.completion(request, verify=choose_verify(verify, request.verify))

    async def chat(body: Any, verify: str | None) -> Reply | StreamReply:
        request = parse_chat(body)
        return await gateway.chat(request, verify=choose_verify(verify, request.verify))

    def endpoint(call: Call) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            return await _handle(request, call, keys=keys, config=config)

        return handle

    routes = [
        Route("/v1/models", endpoint(models), methods=["GET"]),
        Route("/v1/embeddings", endpoint(embeddings), methods=["POST"]),
        Route("/v1/completions", endpoint(completions), methods=["POST"]),
        Route("/v1/chat/completions", endpoint(chat), methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )


async def _handle(
    request: Request, call: Call, *, keys: ApiKeys | None, config: GatewayConfig
) -> Response:
    started = trio.current_time()
    detail = ""
    try:
        if keys is not None:
            keys.check(request.headers.get("authorization"))
        # The mesh client has its own deadline (timeout_s); this one bounds
        # everything else too (a body trickling in, discovery), so no request
        # outlives it.
        with trio.move_on_after(config.timeout_s + DEADLINE_SLACK_S) as scope:
            body = None
            if request.method == "POST":
                body = _decode_json(await _read_body(request, cap=config.max_body_bytes))
            reply = await call(body, request.headers.get(VERIFY_HEADER))
        if scope.cancelled_caught:
            raise ApiError(
                504,
                f"no answer within the gateway's deadline ({config.timeout_s:g} s)",
                type=TIMEOUT,
                code="deadline_exceeded",
            )
        response: Response
        if isinstance(reply, StreamReply):
            # Sent from here on by the server; the mesh client's own deadline
            # (timeout_s) bounds the rest of the stream.
            response = StreamingResponse(reply.events, media_type=MEDIA_TYPE, headers=reply.headers)
        else:
            response = JSONResponse(reply.body, headers=reply.headers)
        detail = reply.log
    except MeshError as exc:
        error = from_mesh_error(exc)
        response = _error_response(error)
    elapsed_ms = (trio.current_time() - started) * 1000
    logger.info(
        "%s %s -> %d in %.1f ms %s",
        request.method,
        request.url.path,
        response.status_code,
        elapsed_ms,
        detail,
    )
    return response


async def _read_body(request: Request, *, cap: int) -> bytes:
    """The request body, refused (413) past ``cap`` bytes before reading more."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > cap):
        raise _too_large(cap)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > cap:
            raise _too_large(cap)
    return bytes(data)


def _too_large(cap: int) -> ApiError:
    return ApiError(413, f"the request body is over {cap} bytes", code="request_too_large")


def _decode_json(data: bytes) -> Any:
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise bad_request("the body's JSON is nested too deeply", code="invalid_json") from None


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's decoder would take them.
    raise ValueError(f"{name} is not a JSON value")


def _error_response(error: ApiError) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, in OpenAI's shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return _error_response(ApiError(exc.status_code, message, code=code))


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug, answered in OpenAI's shape (starlette logs it and re-raises to the server)."""
    logger.error("%s %s failed: %r", request.method, request.url.path, exc)
    error = ApiError(500, "internal error in the gateway", type=SERVER, code="internal_error")
    return _error_response(error)
