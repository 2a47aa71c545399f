"""``mesh node``: run a peer that serves models, until Ctrl-C (then drain and exit 0).

When ready it prints one line, which launchers and tests wait for::

    node <peer id> listening <multiaddr> [<multiaddr> ...] serving <name>,<name>

SIGINT or SIGTERM stops accepting tasks (new ones are answered ``busy`` so
clients go elsewhere), lets tasks in flight finish within ``--drain-timeout``,
and exits 0. A second signal during the drain exits at once.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import trio

from mesh.aio.groups import unwrap_single_error
from mesh.cli import nodeconf
from mesh.errors import ConfigError
from mesh.node.config import NodeConfig
from mesh.node.serve import serve_until_signal
from mesh.node.service import Node

logger = logging.getLogger(__name__)

DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/4001"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "node",
        help="run a node serving models",
        description="Join the mesh and serve models until Ctrl-C; then drain and exit 0.",
    )
    parser.add_argument("--key", required=True, type=Path, help="key file (mesh keygen)")
    parser.add_argument(
        "--listen", action="append", metavar="MULTIADDR", help=f"default {DEFAULT_LISTEN}"
    )
    parser.add_argument("--bootstrap", type=Path, metavar="FILE", help="bootstrap file")
    parser.add_argument(
        "--models", required=True, metavar="NAMES", help="comma list of zoo names to serve"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--data-dir", type=Path, help="receipt log folder (default: by the key)")
    parser.add_argument("--zoo", action="append", type=Path, default=[], metavar="DIR")
    parser.add_argument("--region", default="")
    parser.add_argument("--price-micro", type=_non_negative, default=0)
    parser.add_argument("--max-batch", type=_positive, default=16)
    parser.add_argument("--max-queue", type=_positive, default=64)
    parser.add_argument(
        "--weights", action="append", default=[], metavar="NAME=PATH", help="weights folder"
    )
    parser.add_argument("--threads", type=_positive, default=None, help="torch CPU threads")
    parser.add_argument("--drain-timeout", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file setting any option above (examples/node.toml); precedence: "
        "default < file < MESH_NODE_<OPTION> environment < flag",
    )
    parser.set_defaults(func=node_command)
    nodeconf.enable(parser, env_prefix="MESH_NODE_")  # every option: --config, MESH_NODE_*


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def build_config(args: argparse.Namespace) -> NodeConfig:
    """The NodeConfig of parsed ``mesh node`` arguments (reads the key and bootstrap files).

    Raises:
        KeyFileError: the key file is missing, malformed or readable by others.
        ConfigError: a bad bootstrap line, model list or ``--weights`` item.
    """
    from mesh.files.keyfile import load_key_file
    from mesh.net.bootstrap import load_bootstrap_file

    identity = load_key_file(args.key)
    names = tuple(n.strip() for n in args.models.split(",") if n.strip())
    if not names:
        raise ConfigError("--models needs at least one name")
    weights = []
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--weights takes NAME=PATH, not {item!r}")
        weights.append((name, Path(path)))
    data_dir = args.data_dir or args.key.parent / f"{args.key.name}.data"
    return NodeConfig(
        identity=identity,
        data_dir=data_dir,
        model_names=names,
        listen=tuple(args.listen or [DEFAULT_LISTEN]),
        bootstrap=tuple(load_bootstrap_file(args.bootstrap)) if args.bootstrap else (),
        device=args.device,
        zoo_dirs=tuple(args.zoo),
        weights=tuple(weights),
        region=args.region,
        price_micro=args.price_micro,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        threads=args.threads,
        drain_timeout_s=args.drain_timeout,
    )


def node_command(args: argparse.Namespace) -> int:
    if args.verbose == 0:
        logging.getLogger("mesh").setLevel(logging.INFO)  # tasks are logged at INFO
    config = build_config(args)
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create data dir {config.data_dir}: {exc}") from exc
    from mesh.node.runtime_runner import load_runtime_runner
    from mesh.node.service import libp2p_network_factory

    with unwrap_single_error():
        trio.run(
            functools.partial(
                serve_until_signal,
                config,
                network_factory=libp2p_network_factory,
                runner_factory=load_runtime_runner,
                on_ready=print_ready_line,
            )
        )
    return 0


def print_ready_line(node: Node, out: TextIO = sys.stdout) -> None:
    """The line launchers and tests wait for (see the module docstring)."""
    names = ",".join(node.model_names)
    addrs = " ".join(node.listen_addrs())
    print(f"node {node.peer_id} listening {addrs} serving {names}", file=out, flush=True)
