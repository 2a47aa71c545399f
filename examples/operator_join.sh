#!/usr/bin/env bash
# Join a mesh as an operator: make a key once, then serve models until Ctrl-C.
# See examples/operator_join.md for the walk-through.
#
# Usage: examples/operator_join.sh BOOTSTRAP_FILE [WORK_DIR]
#
# Environment (all optional):
#   MESH_LISTEN   where to listen      (default /ip4/0.0.0.0/tcp/4001; open this port)
#   MESH_MODELS   zoo models to serve  (default tiny-mlp)
#   MESH_DEVICE   auto, cpu or cuda    (default auto: the GPU when there is one)
#   MESH_REGION   a region label       (default none)
#   MESH_THREADS  torch CPU threads    (default: torch's choice)
set -euo pipefail

BOOTSTRAP="${1:?usage: $0 BOOTSTRAP_FILE [WORK_DIR]}"
WORK="${2:-$HOME/.mesh}"
KEY="$WORK/node.key"

mkdir -p "$WORK"
chmod 700 "$WORK"
if [ ! -f "$KEY" ]; then
    # One Ed25519 key: it signs your receipts and is your libp2p identity. Back it up.
    mesh keygen --out "$KEY" >/dev/null
fi
echo "operator peer id: $(mesh peer-id "$KEY")"

args=(--key "$KEY" --bootstrap "$BOOTSTRAP"
      --listen "${MESH_LISTEN:-/ip4/0.0.0.0/tcp/4001}"
      --models "${MESH_MODELS:-tiny-mlp}" --device "${MESH_DEVICE:-auto}")
if [ -n "${MESH_REGION:-}" ]; then args+=(--region "$MESH_REGION"); fi
if [ -n "${MESH_THREADS:-}" ]; then args+=(--threads "$MESH_THREADS"); fi

# exec: Ctrl-C and SIGTERM go straight to the node, which drains and exits 0.
exec mesh node "${args[@]}"
