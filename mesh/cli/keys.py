"""``mesh keygen``: create a node's key file; ``mesh peer-id``: show a key's PeerID.

The key file holds one line, ``mesh-ed25519-seed-v1 <hex seed>``, with mode 0600
(see :mod:`mesh.core.identity`). ``mesh keygen`` prints the PeerID on stdout (so
``PEER=$(mesh keygen --out node.key)`` works) and the path on stderr. Missing
folders above the key are created with mode 0700; an existing key is never
overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mesh.core.identity import Identity
from mesh.errors import KeyFileError
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
    _make_parents(Path(args.out))
    write_key_file(args.out, identity)  # KeyFileError -> exit 1 via mesh.cli.main
    print(identity.peer_id)
    print(f"wrote key to {args.out}", file=sys.stderr)
    return 0


def _make_parents(path: Path) -> None:
    """Create the missing folders above ``path``, each of mode 0700 (a key's folder is private).

    Folders that exist are left as they are.

    Raises:
        KeyFileError: a folder cannot be created.
    """
    missing = [p for p in path.absolute().parents if not p.exists()]
    for folder in reversed(missing):  # outermost first
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs to keep
        except OSError as exc:
            raise KeyFileError(
                f"cannot create folder {folder} for the key: {exc.strerror}"
            ) from exc


def _peer_id(args: argparse.Namespace) -> int:
    print(load_key_file(args.key).peer_id)
    return 0
