"""The ``mesh`` command line: a dispatcher over one module per subcommand group.

Each module in :data:`_COMMAND_MODULES` exposes ``register(subparsers)``, adding
its subcommands with ``set_defaults(func=...)``; ``func(args)`` returns the exit
code. Heavy imports (torch, libp2p) happen inside those functions, so
``mesh --help`` and offline commands such as ``mesh verify`` stay fast.
Only the CLI reads files and environment and installs log handlers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mesh.errors import MeshError
from mesh.net.logs import set_library_verbosity

_COMMAND_MODULES = (
    "mesh.cli.keys",
    "mesh.cli.verify",
    "mesh.cli.node",
    "mesh.cli.client",
    "mesh.cli.testnet",
    "mesh.cli.status",
    "mesh.cli.receipts",
    "mesh.cli.gateway",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesh", description="A peer-to-peer compute mesh for AI inference."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The networking libraries' noise stays out unless asked for (-vv).
    set_library_verbosity(verbosity)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        code: int = args.func(args)
    except MeshError as exc:
        print(f"mesh: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
