"""The node's HTTP endpoint on trio: ``/metrics``, ``/healthz`` and ``/status``.

A deliberately tiny HTTP/1.1 server (one request per connection, ``GET`` and
``HEAD`` only) running in the node's own nursery: it stops with the node and
starts no threads. prometheus-client's own servers (``start_http_server``,
the WSGI app in wsgiref) run in threads that outlive whatever started them, so
the exposition text is generated from the node's registry here and written out
by this handler. Scrapers and health checks are the only clients: each
connection gets :data:`REQUEST_TIMEOUT_S` to send its request line and headers
(at most :data:`MAX_REQUEST_BYTES`), and at most :data:`MAX_CONNECTIONS` are
served at once (more are closed at once).

Routes (what :class:`Routes` answers):

- ``/metrics``: the Prometheus text format (:func:`mesh.node.metrics.render`);
- ``/healthz``: 200 when the node is ready -- serving tasks and advertised in
  the DHT -- else 503; the JSON body says which (``live``, ``ready``, ``reason``);
- ``/healthz/live``: 200 while the node's event loop answers (liveness only);
- ``/status``: the node's own view as JSON (what ``mesh status`` prints).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from mesh.errors import ConfigError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8 * 1024  # a request line and a few headers; scrapers send ~200 B
REQUEST_TIMEOUT_S = 5.0  # to send the request, and again to take the answer
MAX_CONNECTIONS = 16  # scrapers, health checks and `mesh status` at once
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes

    @classmethod
    def json(cls, status: int, doc: Mapping[str, Any]) -> Response:
        return cls(status, JSON, (json.dumps(doc, sort_keys=True) + "\n").encode())


@dataclass(frozen=True, slots=True)
class Health:
    """Liveness and readiness, as ``/healthz`` reports them."""

    ready: bool
    reason: str  # why not ready ("" when ready)


class Routes:
    """What each path answers.

    Args:
        metrics: the exposition text and its content type.
        health: readiness now.
        status: the node's status document.
    """

    def __init__(
        self,
        *,
        metrics: Callable[[], tuple[bytes, str]],
        health: Callable[[], Health],
        status: Callable[[], Mapping[str, Any]],
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._status = status

    def respond(self, method: str, target: str) -> Response:
        if method not in ("GET", "HEAD"):
            return Response.json(405, {"error": f"method {method} not allowed"})
        path = target.split("?", 1)[0].rstrip("/") or "/"
        if path == "/metrics":
            body, content_type = self._metrics()
            return Response(200, content_type, body)
        if path == "/healthz/live":
            return Response.json(200, {"live": True})
        if path == "/healthz":
            health = self._health()
            doc = {"live": True, "ready": health.ready, "reason": health.reason}
            return Response.json(200 if health.ready else 503, doc)
        if path == "/status":
            return Response.json(200, self._status())
        return Response.json(404, {"error": "not found", "paths": list(PATHS)})


PATHS = ("/metrics", "/healthz", "/healthz/live", "/status")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) as (host, port).

    Raises:
        ConfigError: not of that form, or a port outside 0-65535.
    """
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 <= port <= 65535:
        raise ConfigError(f"--metrics takes HOST:PORT (e.g. 127.0.0.1:9464), not {text!r}")
    return host, port


def url_of(host: str, port: int) -> str:
    """The URL a local client uses for a server bound to ``host``:``port``."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve_http(
    routes: Routes,
    host: str,
    port: int,
    *,
    task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``routes`` on ``host``:``port`` until cancelled; ``started`` with the port bound.

    Raises:
        ConfigError: the address cannot be bound (in use, not local).
    """
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ConfigError(f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}") from exc
    bound = listeners[0].socket.getsockname()[1]
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                return  # too many at once: close; scrapers retry
            try:
                await _serve_one(stream, routes)
            finally:
                limiter.release()

    task_status.started(bound)
    await trio.serve_listeners(handler, listeners)


async def _serve_one(stream: trio.SocketStream, routes: Routes) -> None:
    request = b""
    with trio.move_on_after(REQUEST_TIMEOUT_S):
        try:
            while b"\r\n\r\n" not in request and len(request) <= MAX_REQUEST_BYTES:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                request += chunk
        except (trio.BrokenResourceError, OSError):
            return
    head = request.split(b"\r\n", 1)[0].decode("latin-1")
    parts = head.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return  # not HTTP, too slow or too long: close without a word
    method, target = parts[0], parts[1]
    response = routes.respond(method, target)
    header = (
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    with trio.move_on_after(REQUEST_TIMEOUT_S):
        try:
            await stream.send_all(header + (b"" if method == "HEAD" else response.body))
        except (trio.BrokenResourceError, OSError) as exc:
            logger.debug("HTTP client went away: %r", exc)
