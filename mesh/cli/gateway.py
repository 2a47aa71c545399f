"""``mesh gateway``: an OpenAI-compatible HTTP API over the mesh, until Ctrl-C.

``mesh gateway --bootstrap FILE --listen HOST:PORT [--api-key-file FILE]
[--key KEYFILE] [--zoo DIR] [--timeout SECONDS] [--max-body-bytes N]``

Serves ``/v1/models``, ``/v1/embeddings``, ``/v1/completions`` and
``/v1/chat/completions`` (see :mod:`mesh.gateway`). When it listens it prints
``gateway listening http://HOST:PORT (models: ...; auth: ...)``; SIGINT or
SIGTERM stop it after the requests in flight (a second signal at once).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import trio

from mesh.gateway.config import DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT_S

DEFAULT_LISTEN = "127.0.0.1:8080"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="serve an OpenAI-compatible HTTP API over the mesh",
        description="Serve OpenAI's /v1/models, /v1/embeddings, /v1/completions and "
        "/v1/chat/completions over the mesh; every response carries its receipts.",
    )
    parser.add_argument("--bootstrap", required=True, metavar="FILE", help="bootstrap file")
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT", help=f"default {DEFAULT_LISTEN}"
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        metavar="FILE",
        help="accepted bearer keys, one a line (# comments); without it the gateway is open",
    )
    parser.add_argument("--key", type=Path, help="key file that signs tasks (default: throwaway)")
    parser.add_argument("--zoo", action="append", type=Path, default=[], metavar="DIR")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"deadline of one request on the mesh (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help=f"largest request body (default {DEFAULT_MAX_BODY_BYTES})",
    )
    parser.set_defaults(func=gateway_command)


def gateway_command(args: argparse.Namespace) -> int:
    from mesh.aio.groups import unwrap_single_error
    from mesh.gateway.auth import load_api_keys
    from mesh.gateway.config import GatewayConfig, parse_listen
    from mesh.gateway.serve import run_gateway

    host, port = parse_listen(args.listen)
    config = GatewayConfig(
        host=host,
        port=port,
        timeout_s=args.timeout,
        max_body_bytes=args.max_body_bytes,
        api_keys=load_api_keys(args.api_key_file) if args.api_key_file else None,
        zoo_dirs=tuple(args.zoo),
    )
    with unwrap_single_error():
        trio.run(functools.partial(run_gateway, config, bootstrap=args.bootstrap, key=args.key))
    return 0
