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
from mesh.node.status_http import parse_listen

logger = logging.getLogger(__name__)

DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/4001"
# The HTTP endpoint by default: loopback only (nothing exposed), a free port, so
# `mesh status` works on every node; operators scraping it name an address.
DEFAULT_HTTP = "127.0.0.1:0"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "node",
        help="run a node serving models",
        description="Join the mesh and serve models until Ctrl-C; then drain and exit 0.",
    )
    parser.add_argument(
        "--key", required=True, type=Path, metavar="PATH",
        help="the node's key file (mesh keygen): its PeerID, and what signs receipts",
    )  # fmt: skip
    parser.add_argument(
        "--listen", action="append", metavar="MULTIADDR",
        help=f"address to listen on, repeatable (default {DEFAULT_LISTEN}: every interface)",
    )  # fmt: skip
    parser.add_argument(
        "--announce", action="append", default=[], metavar="MULTIADDR",
        help="address others dial, repeatable (e.g. /ip4/203.0.113.7/tcp/4001 for a public "
        "address or a port forwarded by NAT); default: the listen addresses, 0.0.0.0 "
        "replaced by this host's interface addresses",
    )  # fmt: skip
    parser.add_argument(
        "--bootstrap", type=Path, metavar="FILE",
        help="file of peers to join through, one /p2p/ multiaddr a line",
    )  # fmt: skip
    parser.add_argument(
        "--models", required=True, metavar="NAMES",
        help="comma list of zoo names to serve, or 'auto': every zoo model whose weights "
        "are here and that fits in the device's free memory (logged one by one)",
    )  # fmt: skip
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto",
        help="where models run; auto: CUDA when present, else CPU (default auto)",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR",
        help="receipt log and status folder (default: KEY.data next to the key file)",
    )  # fmt: skip
    parser.add_argument(
        "--zoo", action="append", type=Path, default=[], metavar="DIR",
        help="extra model zoo folder, searched before the built-in one; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--region", default="", metavar="LABEL",
        help="free-form region label advertised to clients (e.g. eu-west)",
    )  # fmt: skip
    parser.add_argument(
        "--price-micro", type=_non_negative, default=0, metavar="N",
        help="price per task in micro-units: advertised, and recorded in every receipt "
        "(mesh receipts sums it as earnings); default 0",
    )  # fmt: skip
    parser.add_argument(
        "--max-batch", type=_positive, default=16, metavar="N",
        help="largest batch a model runs at once (default 16)",
    )  # fmt: skip
    parser.add_argument(
        "--max-queue", type=_positive, default=64, metavar="N",
        help="tasks queued or running before new ones are answered busy (default 64)",
    )  # fmt: skip
    parser.add_argument(
        "--weights", action="append", default=[], metavar="NAME=PATH",
        help="weights folder of a model without shipped weights (gpt2=DIR); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=_positive, default=None, metavar="N",
        help="torch CPU threads (default: torch's choice)",
    )  # fmt: skip
    parser.add_argument(
        "--drain-timeout", type=float, default=30.0, metavar="SECONDS",
        help="on SIGTERM/Ctrl-C, how long tasks in flight may finish (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics", default=DEFAULT_HTTP, metavar="HOST:PORT",
        help="serve /metrics (Prometheus), /healthz and /status there; port 0 picks a free "
        f"one; the URL goes to DATA_DIR/status.url for mesh status (default {DEFAULT_HTTP}: "
        "this host only); 'off' serves nothing",
    )  # fmt: skip
    parser.add_argument(
        "--self-check", action=argparse.BooleanOptionalAction, default=True,
        help="at start, ask connected peers to dial the advertised addresses back and log "
        "whether the mesh can reach this node, and what to open if not (default on)",
    )  # fmt: skip
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
    announce = tuple(_announce_addr(a) for a in args.announce)
    http_listen = None if args.metrics.strip().lower() == "off" else parse_listen(args.metrics)
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
        announce=announce,
        http_listen=http_listen,
        self_check=args.self_check,
    )


def _announce_addr(text: str) -> str:
    """An ``--announce`` address: ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>``, port not 0.

    Raises:
        ConfigError: another form, or a ``/p2p/`` part (the node adds its own).
    """
    from mesh.net.multiaddrs import parse_multiaddr

    addr = parse_multiaddr(text, where="--announce")
    names = [p.name for p in addr.protocols()]
    if (
        len(names) != 2
        or names[0] not in ("ip4", "ip6", "dns", "dns4", "dns6")
        or names[1] != "tcp"
    ):
        raise ConfigError(f"--announce takes /ip4|ip6|dns4|dns6/<host>/tcp/<port>, not {text!r}")
    if addr.value_for_protocol("tcp") in ("0", 0):
        raise ConfigError(f"--announce needs the real port others dial, not 0: {text!r}")
    if names[0] in ("ip4", "ip6") and addr.value_for_protocol(names[0]) in ("0.0.0.0", "::"):
        raise ConfigError(f"--announce needs an address others can dial, not {text!r}")
    return str(addr)


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
    """The line launchers and tests wait for (see the module docstring).

    It lists the addresses others dial (``--announce``, else the listen addresses
    with ``0.0.0.0`` replaced by this host's interface addresses), never ``0.0.0.0``.
    """
    names = ",".join(node.model_names)
    bound = node.listen_addrs()
    advertised = node.advertised_addrs()
    if bound != advertised:
        logger.info("bound to %s; advertising %s", " ".join(bound), " ".join(advertised))
    if node.http_url is not None:
        logger.info("status: mesh status --url %s", node.http_url)
    addrs = " ".join(advertised)
    print(f"node {node.peer_id} listening {addrs} serving {names}", file=out, flush=True)
