#!/opt/mesh/bin/python
"""The node image's entrypoint: make the key on first start, then run ``mesh node``.

``podman run IMAGE [NODE FLAGS...]`` runs ``mesh node [NODE FLAGS...]`` in this
process (so it is PID 1 and gets the stop signal itself). Settings come, as for any
``mesh node``, from flags, ``MESH_NODE_*`` variables and a TOML file
(``--config``/``MESH_NODE_CONFIG``; ``/etc/mesh/node.toml`` when it exists and
neither names one). What the image adds, below all of those:

- the key: ``$MESH_HOME/node.key`` (``MESH_HOME=/var/lib/mesh``, the volume) unless a
  flag, variable or the file names one; created there with ``mesh keygen`` when
  absent (a key named elsewhere must exist);
- the receipt log next to the key (``mesh node``'s own default), so in the volume.

``podman run IMAGE mesh peer-id /var/lib/mesh/node.key`` (a first argument that is
not an option) runs that command instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

IMAGE_CONFIG = Path("/etc/mesh/node.toml")


def main(argv: list[str]) -> int:
    if argv and not argv[0].startswith("-"):
        os.execvp(argv[0], argv)  # another command: `IMAGE mesh peer-id ...`, `IMAGE bash`

    from mesh.cli import build_parser
    from mesh.cli import main as mesh_main
    from mesh.cli.nodeconf import settings_of
    from mesh.errors import ConfigError

    if not os.environ.get("MESH_NODE_CONFIG") and IMAGE_CONFIG.is_file():
        os.environ["MESH_NODE_CONFIG"] = str(IMAGE_CONFIG)
    settings = settings_of(build_parser(), "node")
    try:
        flagged, values, _ = settings.layers(argv)  # bad flags: usage, exit 2
    except ConfigError as exc:
        print(f"mesh node: error: {exc}", file=sys.stderr)
        return 2
    extra: list[str] = []
    if "key" not in flagged and "key" not in values:  # set nowhere: the volume's key
        key = Path(os.environ.get("MESH_HOME", "/var/lib/mesh")) / "node.key"
        extra = ["--key", str(key)]
        # Only there: a key named by the operator but missing is an error (mesh node
        # says so), never quietly replaced by a new identity.
        if not key.exists():
            print(f"mesh-entrypoint: no key at {key}: making one (back it up)", file=sys.stderr)
            code = mesh_main(["keygen", "--out", str(key)])  # prints the new PeerID
            if code != 0:
                return code
    return mesh_main(["node", *extra, *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
