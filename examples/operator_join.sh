#!/usr/bin/env bash
# Join a mesh as an operator without containers: make a key once, write a starter
# config file once, then serve models until Ctrl-C. See examples/operator_join.md.
#
# Usage: examples/operator_join.sh BOOTSTRAP_FILE [WORK_DIR]      (WORK_DIR: ~/.mesh)
#
# WORK_DIR holds node.key (made here once, mode 0600) and node.toml (written here once
# with the basics; edit it -- examples/node.toml shows every option). Any option can
# also come from the environment, which wins over the file, e.g.
#   MESH_NODE_LISTEN=/ip4/127.0.0.1/tcp/0 MESH_NODE_DEVICE=cpu MESH_NODE_REGION=eu-west
set -euo pipefail

BOOTSTRAP="${1:?usage: $0 BOOTSTRAP_FILE [WORK_DIR]}"
WORK="${2:-$HOME/.mesh}"
KEY="$WORK/node.key"
CONFIG="$WORK/node.toml"

if [ ! -f "$KEY" ]; then
    # One Ed25519 key: it signs your receipts and is your libp2p identity. Back it up.
    # keygen makes missing folders (mode 0700) and never overwrites a key.
    mesh keygen --out "$KEY" >/dev/null
fi
if [ ! -f "$CONFIG" ]; then
    cat >"$CONFIG" <<'TOML'
# mesh node settings (examples/node.toml lists every option). MESH_NODE_<OPTION>
# variables override this file; command-line flags override both.
models = "tiny-mlp"
listen = ["/ip4/0.0.0.0/tcp/4001"]   # open this TCP port to other peers
device = "auto"                     # the GPU when there is one
TOML
fi
echo "operator peer id: $(mesh peer-id "$KEY")"

# exec: Ctrl-C and SIGTERM go straight to the node, which drains and exits 0.
exec mesh node --config "$CONFIG" --key "$KEY" --bootstrap "$BOOTSTRAP"
