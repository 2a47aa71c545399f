"""Serving the gateway: one mesh client, the ASGI app on hypercorn's trio worker, signals.

When it listens it prints one line, which tests and launchers wait for::

    gateway listening http://HOST:PORT (models: a,b; auth: open)

(``auth: N API keys`` with a key file). SIGINT or SIGTERM stops accepting
connections, lets requests in flight finish within ``graceful_stop_s``, closes
the mesh client and returns.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from mesh.aio.signals import STOP_SIGNALS, stop_on_signals
from mesh.client.async_client import AsyncClient
from mesh.client.config import ClientConfig
from mesh.errors import ConfigError, MeshError
from mesh.gateway.app import build_app
from mesh.gateway.catalog import Catalog
from mesh.gateway.config import GatewayConfig
from mesh.gateway.service import Gateway

logger = logging.getLogger(__name__)


def hypercorn_config(config: GatewayConfig) -> HypercornConfig:
    """Hypercorn's settings for ``config`` (its logs go through ``logging``)."""
    hc = HypercornConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hc.bind = [f"{host}:{config.port}"]
    hc.graceful_timeout = config.graceful_stop_s
    hc.accesslog = None  # the app logs each request itself (mesh.gateway.app)
    hc.errorlog = logging.getLogger("mesh.gateway.http")
    return hc


async def run_gateway(
    config: GatewayConfig,
    *,
    bootstrap: Sequence[str] | str | Path,
    key: Path | None = None,
    out: TextIO = sys.stdout,
    stop: trio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set), printing the startup line.

    Args:
        config: the gateway's settings.
        bootstrap: the mesh's bootstrap file or multiaddrs.
        key: the client key that signs tasks (a throwaway key when None).
        out: where the startup line goes.
        stop: an event that stops the gateway as a signal does (tests, embedding).

    Raises:
        ConfigError: a bad zoo folder, or the address cannot be bound.
        NetworkError: no bootstrap peer could be reached.
    """
    catalog = Catalog(config.zoo_dirs)
    stop = stop or trio.Event()
    client_config = ClientConfig(timeout_s=config.timeout_s, zoo_dirs=config.zoo_dirs)
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with (
            AsyncClient.connect(bootstrap=bootstrap, key=key, config=client_config) as client,
            trio.open_nursery() as watcher,
        ):
            watcher.start_soon(
                functools.partial(stop_on_signals, winding_down="finishing the requests in flight"),
                signals,
                stop,
                watcher.cancel_scope,
            )
            gateway = Gateway(client, catalog, timeout_s=config.timeout_s)
            app = build_app(gateway, config)
            async with trio.open_nursery() as server:
                try:
                    binds = await server.start(_serve, app, hypercorn_config(config), stop)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot listen on {config.host}:{config.port}: {exc}"
                    ) from exc
                names = await _model_names(gateway)
                auth = "open" if config.api_keys is None else f"{len(config.api_keys)} API keys"
                print(
                    f"gateway listening {binds[0]} (models: {names}; auth: {auth})",
                    file=out,
                    flush=True,
                )
            # hypercorn returned: stopped and drained. Stop watching signals.
            watcher.cancel_scope.cancel()


async def _serve(
    app: Any,
    config: HypercornConfig,
    stop: trio.Event,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)


async def _model_names(gateway: Gateway) -> str:
    try:
        reply = await gateway.models()
    except MeshError as exc:  # the line must come even when the mesh is unreachable now
        logger.warning("cannot list the mesh's models at start: %s", exc)
        return "unknown"
    data: Any = reply.body["data"]
    return ",".join(str(m["id"]) for m in data) or "none yet"
