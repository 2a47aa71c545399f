"""The node's operator-facing parts: advertised addresses, gauges, the HTTP endpoint.

Small functions :class:`mesh.node.service.Node` calls, kept here so the node's
service module stays about serving tasks. The HTTP endpoint's URL is written to
``<data dir>/status.url`` while it serves, which is how ``mesh status`` finds a
running node from its data dir (or its key file, the data dir's default place).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from mesh.net.endpoints import expand_unspecified
from mesh.node.metrics import CONTENT_TYPE, NodeMetrics, render
from mesh.node.status_http import Health, Routes, serve_http, url_of

if TYPE_CHECKING:
    from mesh.node.service import Node

logger = logging.getLogger(__name__)

STATUS_URL_FILE = "status.url"  # in the data dir, while the HTTP endpoint serves


def advertised_addrs(announce: Sequence[str], listen: Sequence[str], peer_id: str) -> list[str]:
    """The full multiaddrs others dial: ``announce`` if given, else ``listen`` with each
    ``0.0.0.0``/``::`` address replaced by this host's interface addresses."""
    if announce:
        bare = [a.split("/p2p/")[0] for a in announce]
    else:
        bare = expand_unspecified([a.split("/p2p/")[0] for a in listen])
    return [f"{a}/p2p/{peer_id}" for a in bare]


def register_gauges(
    metrics: NodeMetrics,
    *,
    peer_id: str,
    queue_depth: Callable[[], int],
    queue_capacity: Callable[[], int],
    running: Callable[[], int],
    connected_peers: Callable[[], int],
    ready: Callable[[], bool],
    draining: Callable[[], bool],
    reachable: Callable[[], str | None],
) -> None:
    """The gauges read when ``/metrics`` is scraped."""
    metrics.info_gauge("mesh_node_info", "This node's PeerID", {"peer_id": peer_id})
    metrics.gauge("mesh_queue_depth", "Tasks admitted and not yet answered", queue_depth)
    metrics.gauge("mesh_queue_capacity", "Tasks in flight before new ones are busy", queue_capacity)
    metrics.gauge("mesh_tasks_running", "Admitted tasks whose batch runs now", running)
    metrics.gauge("mesh_connected_peers", "Peers with an open connection", connected_peers)
    metrics.gauge("mesh_ready", "1 when serving and advertised, else 0", lambda: float(ready()))
    metrics.gauge("mesh_draining", "1 once the node is leaving", lambda: float(draining()))

    def reach() -> dict[str, float]:
        status = reachable()
        return {s: float(s == status) for s in ("reachable", "unreachable", "unknown")}

    metrics.labelled_gauge(
        "mesh_reachability",
        "The latest self-check: 1 for its status (none before the first)",
        "status",
        lambda: reach() if reachable() is not None else {},
    )


def health_of(node: Node) -> Health:
    """Readiness as ``/healthz`` reports it."""
    if node.ready:
        return Health(True, "")
    status = node.status()
    if status.draining:
        return Health(False, "draining: not taking new tasks")
    if status.uptime_s == 0.0 and not status.adverts_published:
        return Health(False, "starting")
    return Health(False, "not advertised yet: no capacity record stored in the DHT")


async def start_http(node: Node, nursery: trio.Nursery) -> str:
    """Serve the node's HTTP endpoint in ``nursery``; write its URL to the data dir."""
    assert node.config.http_listen is not None
    host, port = node.config.http_listen
    routes = Routes(
        metrics=lambda: (render(node.metrics), CONTENT_TYPE),
        health=lambda: health_of(node),
        status=lambda: node.status().to_json(),
    )
    bound: int = await nursery.start(serve_http, routes, host, port)
    url = url_of(host, bound)
    node.http_url = url
    _write_atomically(node.config.data_dir / STATUS_URL_FILE, url + "\n")
    logger.info("metrics and status on %s (/metrics, /healthz, /status)", url)
    return url


def forget_http(node: Node) -> None:
    """Remove ``status.url`` if it still names this node's endpoint (at exit)."""
    if node.http_url is None:
        return
    path = node.config.data_dir / STATUS_URL_FILE
    try:
        if path.read_text().strip() == node.http_url:
            path.unlink()
    except OSError as exc:
        logger.debug("cannot remove %s: %s", path, exc)


def read_status_url(data_dir: Path) -> str | None:
    """The URL a running node wrote to ``data_dir``, or None."""
    try:
        return (data_dir / STATUS_URL_FILE).read_text().strip() or None
    except OSError:
        return None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        logger.warning("cannot write %s (mesh status will need --url): %s", path, exc)
