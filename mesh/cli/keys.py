"""``mesh keygen``: create a node's key file; ``mesh peer-id``: show a key's PeerID.

The key file holds one line, ``mesh-ed25519-seed-v1 <hex seed>``, with mode 0600
(see :mod:`mesh.core.identity`). ``mesh keygen`` prints the PeerID on stdout (so
``PEER=$(mesh keygen --out node.key)`` works) and the path on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mesh.core.identity import Identity
from mesh.files.keyfile import load_key_file, write_key_file


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    keygen = subparsers.add_parser("keygen", help="create a new key file (Ed25519 seed, mode 0600)")
    keygen.add_argument("--out", required=True, metavar="PATH", help="key file to create")
    keygen.set_defaults(func=_keygen)
    peer_id = subparsers.add_parser("peer-id", help="print the PeerID of a key file")
    peer_id.add_argument("key", metavar="KEYFILE")
    peer_id.set_defaults(func=_peer_id)


def _keygen(args: argparse.Namespace) -> int:
    identity = Identity.generate()
    write_key_file(args.out, identity)  # KeyFileError -> exit 1 via mesh.cli.main
    print(identity.peer_id)
    print(f"wrote key to {args.out}", file=sys.stderr)
    return 0


def _peer_id(args: argparse.Namespace) -> int:
    print(load_key_file(args.key).peer_id)
    return 0
