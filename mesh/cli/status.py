"""``mesh status``: a running node's own view, read from its HTTP endpoint.

``mesh status [--url URL | --data-dir DIR | --key KEY | --config FILE] [--json]``
asks the node's ``/status`` (served beside ``/metrics``, see ``mesh node
--metrics``). The URL comes from ``--url``, else from ``DATA_DIR/status.url``,
which a node writes while it serves: the data dir is ``--data-dir``, or
``KEY.data`` next to ``--key``, or what ``--config`` (a node's TOML file) or
``MESH_NODE_CONFIG`` names, or ``$MESH_HOME/node.key.data`` (the container image's
place). It prints uptime, readiness, advertised addresses, reachability (the
latest self-check, with what to open when the mesh cannot reach the node), peers,
models, tasks served by reply code, and the queue.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from mesh.errors import ConfigError, PeerUnavailable
from mesh.node.ops import STATUS_URL_FILE, read_status_url


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a running node's own view (uptime, peers, tasks, reachability)",
        description="Ask a running node (on this host) for its status.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", metavar="URL", help="the node's HTTP endpoint (http://HOST:PORT)")
    where.add_argument("--data-dir", type=Path, metavar="DIR", help="the node's data dir")
    where.add_argument("--key", type=Path, metavar="PATH", help="the node's key file")
    where.add_argument("--config", type=Path, metavar="FILE", help="the node's TOML config")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS", help="HTTP deadline (default 5)"
    )
    parser.set_defaults(func=status_command)


def find_url(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str:
    """The node's endpoint URL from the arguments (see the module docstring).

    Raises:
        ConfigError: nothing names a node, or its data dir has no status.url.
    """
    env = dict(os.environ) if environ is None else environ
    if args.url:
        return str(args.url).rstrip("/")
    data_dir = _data_dir(args, env)
    if data_dir is None:
        raise ConfigError("which node? give --url, --data-dir, --key or --config")
    url = read_status_url(data_dir)
    if url is None:
        raise ConfigError(
            f"no {data_dir / STATUS_URL_FILE}: is the node running (with --metrics not off)?"
        )
    return url.rstrip("/")


def _data_dir(args: argparse.Namespace, env: dict[str, str]) -> Path | None:
    if args.data_dir is not None:
        return Path(args.data_dir)
    if args.key is not None:
        key = Path(args.key)
        return key.parent / f"{key.name}.data"
    config = args.config or (Path(env["MESH_NODE_CONFIG"]) if env.get("MESH_NODE_CONFIG") else None)
    if config is not None:
        from mesh.cli import build_parser
        from mesh.cli.nodeconf import settings_of

        values = settings_of(build_parser(), "node").read_file(config)
        if values.get("data_dir") is not None:
            return Path(values["data_dir"])
        if values.get("key") is not None:
            key = Path(values["key"])
            return key.parent / f"{key.name}.data"
    if env.get("MESH_HOME"):
        return Path(env["MESH_HOME"]) / "node.key.data"
    return None


def fetch_status(url: str, *, timeout: float) -> dict[str, Any]:
    """GET ``url/status``. Raises PeerUnavailable when the node does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=timeout) as response:
            doc = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise PeerUnavailable(f"no status from {url}: {exc}") from exc
    if not isinstance(doc, dict):
        raise PeerUnavailable(f"{url}/status did not answer a JSON object")
    return doc


def status_command(args: argparse.Namespace) -> int:
    url = find_url(args)
    doc = fetch_status(url, timeout=args.timeout)
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        print_status(doc, url=url, out=sys.stdout)
    return 0


def _duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [f"{days}d"] if days else []
    return " ".join([*parts, f"{hours}h{minutes:02d}m{s:02d}s"])


def print_status(doc: dict[str, Any], *, url: str, out: TextIO) -> None:
    state = "draining" if doc.get("draining") else "ready" if doc.get("ready") else "not ready"
    print(f"node {doc.get('peer_id')}: {state}, up {_duration(doc.get('uptime_s', 0))}", file=out)
    print(f"  endpoint: {url}", file=out)
    for addr in doc.get("advertised", []):
        print(f"  advertised: {addr}", file=out)
    reach = doc.get("reachability")
    if not reach:
        print("  reachability: not checked (self-check off, or not run yet)", file=out)
    else:
        print(f"  reachability: {reach['status']} (asked {len(reach['asked'])} peers)", file=out)
        for verdict in reach.get("addrs", []):
            line = f"    {verdict['addr']}: {verdict['status']}"
            if verdict["tried"]:
                line += f" ({verdict['reached']} of {verdict['tried']} peers got through)"
            print(line, file=out)
            if verdict.get("advice"):
                print(f"      -> {verdict['advice']}", file=out)
    print(f"  peers: {doc.get('connected_peers', 0)} connected", file=out)
    models = doc.get("models", {})
    listed = ", ".join(f"{name} ({root[:8]})" for name, root in sorted(models.items()))
    print(f"  models: {listed or 'none'}", file=out)
    answered = doc.get("answered", {})
    total = sum(answered.values())
    codes = ", ".join(f"{code} {n}" for code, n in sorted(answered.items()))
    print(f"  tasks answered: {total}{f' ({codes})' if codes else ''}", file=out)
    print(
        f"  queue: {doc.get('in_flight', 0)}/{doc.get('capacity', 0)} in flight, "
        f"{doc.get('running', 0)} running; adverts published {doc.get('adverts_published', 0)}",
        file=out,
    )
