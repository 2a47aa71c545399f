#!/usr/bin/env bash
# Smoke-test the node image: two containers join a testnet started on the host, and a
# client on the host gets a verified receipt from each.
#
# Usage: scripts/container-smoke.sh [TAG]       (default TAG: localhost/mesh-node:latest)
#
# What it checks, in order:
#   1. `mesh testnet --nodes 2` on the host prints ready;
#   2. two containers (--network host, a volume each, node.toml mounted at /etc/mesh;
#      the second with MESH_NODE_REGION in its environment) print their ready lines: the
#      entrypoint made a key in each volume on first start;
#   3. `mesh peers --json` on the host lists both with the file's region and price, and
#      the environment's region for the second;
#   4. `mesh run tiny-mlp --target <container peer> --receipt-out` then `mesh verify`,
#      for each container;
#   5. the nodes run as a non-root user, and the image's HEALTHCHECK passes (the node's
#      /healthz: the first container names it in MESH_HEALTH_URL, the second's is found
#      through the status.url file in its data dir);
#   6. the first container's metrics endpoint (MESH_NODE_METRICS) counts the task it
#      served and its receipt, and `mesh status` inside it shows the node ready;
#   7. `podman stop` (SIGTERM) drains the first node: exit code 0; its key stays in its
#      volume (a new container reads the same PeerID from it).
#
# Environment (optional): MESH (the host's mesh command, default .venv/bin/mesh),
# MESH_SMOKE_TIMEOUT (seconds for each node to become ready, default 180),
# MESH_PODMAN_RUNTIME and MESH_NOFILE (container/podman.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG="${1:-localhost/mesh-node:latest}"
MESH="${MESH:-$PWD/.venv/bin/mesh}"
PY="$(dirname "$MESH")/python"
TIMEOUT="${MESH_SMOKE_TIMEOUT:-180}"
STOP_TIMEOUT=40 # podman stop's wait before SIGKILL: longer than the 30 s drain timeout
# shellcheck source=container/podman.sh
source container/podman.sh

started=$(date +%s)
step() { echo "container-smoke: [$(($(date +%s) - started)) s] $*"; }
fail() {
    echo "container-smoke: FAILED: $*" >&2
    exit 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/mesh-smoke.XXXXXX")"
name="mesh-smoke-$$" # unique per run: parallel runs on one host do not collide
containers=()
testnet_pid=""
cleanup() {
    local code=$?
    if [ "$code" -ne 0 ]; then
        for c in "${containers[@]}"; do
            echo "--- logs of $c" >&2
            podman_cmd logs "$c" 2>&1 | tail -30 >&2 || true
        done
        [ -f "$work/testnet.err" ] && { echo "--- testnet stderr" >&2; tail -20 "$work/testnet.err" >&2; }
    fi
    for c in "${containers[@]}"; do podman_cmd rm --force --time 0 "$c" >/dev/null 2>&1 || true; done
    for c in "${containers[@]}"; do podman_cmd volume rm --force "$c" >/dev/null 2>&1 || true; done
    if [ -n "$testnet_pid" ] && kill -0 "$testnet_pid" 2>/dev/null; then
        kill -TERM "$testnet_pid" 2>/dev/null || true
        timeout 60 tail --pid="$testnet_pid" -f /dev/null || kill -KILL "$testnet_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$code"
}
trap cleanup EXIT

# wait_for COMMAND PATTERN WHAT: run COMMAND every second until a line of its output
# matches PATTERN, within TIMEOUT seconds; print that line.
wait_for() {
    local source="$1" pattern="$2" what="$3" deadline=$(($(date +%s) + TIMEOUT)) out line
    while [ "$(date +%s)" -lt "$deadline" ]; do
        # Whole output first: grep -m1 in a pipe would SIGPIPE the source, and pipefail
        # would count a match as a failure.
        out="$(eval "$source" 2>&1 || true)"
        if line="$(grep -m1 -E "$pattern" <<<"$out")"; then
            echo "$line"
            return 0
        fi
        sleep 1
    done
    fail "no $what within $TIMEOUT s"
}

[ -x "$MESH" ] || fail "no mesh command at $MESH (run scripts/setup.sh, or set MESH)"
podman_cmd image exists "$TAG" || fail "no image $TAG (run scripts/build-image.sh)"

# --- 1. a testnet on the host -----------------------------------------------------------
step "starting a 2-node testnet on the host"
"$MESH" testnet --nodes 2 --models tiny-mlp --bootstrap-out "$work/boot.txt" \
    --work-dir "$work/testnet" >"$work/testnet.out" 2>"$work/testnet.err" &
testnet_pid=$!
line="$(wait_for "kill -0 $testnet_pid && cat $work/testnet.out || echo TESTNET-EXITED" \
    "ready|TESTNET-EXITED" "testnet ready line")"
[ "$line" != TESTNET-EXITED ] || fail "the testnet exited"

# --- 2. two containers ------------------------------------------------------------------
mkdir -p "$work/etc"
cp "$work/boot.txt" "$work/etc/boot.txt"
cat >"$work/etc/node.toml" <<'TOML'
# No key: the image keeps it in its volume and makes it on first start.
models = "tiny-mlp"
listen = ["/ip4/127.0.0.1/tcp/0"]   # --network host: the host's loopback, a free port
bootstrap = "boot.txt"              # next to this file, in /etc/mesh
device = "cpu"
threads = 1
region = "smoke-file"
price-micro = 7
TOML
chmod 0755 "$work/etc" && chmod 0644 "$work/etc/"*

metrics_port_a=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
metrics_env=(-e "MESH_NODE_METRICS=127.0.0.1:$metrics_port_a"
    -e "MESH_HEALTH_URL=http://127.0.0.1:$metrics_port_a/healthz")

start_container() { # NAME EXTRA-ARGS...
    local c="$1"
    shift
    containers+=("$c")
    # stderr kept aside here and below: without systemd, podman logs errors about the
    # image's HEALTHCHECK timer (harmless; step 5 runs the check itself).
    podman_cmd run --detach --name "$c" --network host "${PODMAN_ULIMITS[@]}" \
        --volume "$c:/var/lib/mesh" --volume "$work/etc:/etc/mesh:ro" "$@" "$TAG" \
        >/dev/null 2>"$work/$c.run.err" || { cat "$work/$c.run.err" >&2; fail "podman run $c"; }
}
step "starting two node containers from $TAG"
start_container "$name-a" "${metrics_env[@]}"
start_container "$name-b" -e MESH_NODE_REGION=smoke-env
declare -A peer
for c in "$name-a" "$name-b"; do
    line="$(wait_for "podman_cmd logs $c" '^node [^ ]+ listening' "ready line from $c")"
    peer[$c]="$(echo "$line" | cut -d' ' -f2)"
    step "$c ready: $line"
    logs="$(podman_cmd logs "$c" 2>&1)"
    grep -q "no key at /var/lib/mesh/node.key: making one" <<<"$logs" ||
        fail "$c did not make its key on first start"
done

# --- 3. the host sees them --------------------------------------------------------------
step "mesh peers on the host"
"$MESH" peers --bootstrap "$work/boot.txt" --json >"$work/peers.json"
"$PY" - "$work/peers.json" "${peer[$name-a]}" "${peer[$name-b]}" <<'PY' || fail "mesh peers"
import json, sys
rows = {row["peer_id"]: row for row in json.load(open(sys.argv[1]))}
a, b = rows.get(sys.argv[2]), rows.get(sys.argv[3])
assert a and b, f"container peers missing from mesh peers: {sorted(rows)}"
assert a["region"] == "smoke-file" and b["region"] == "smoke-env", (a, b)
assert a["models"] == b["models"] == ["tiny-mlp"], (a, b)
print(f"  {len(rows)} peers; regions: file -> {a['region']}, environment -> {b['region']}")
PY

# --- 4. a verified receipt from each container ------------------------------------------
input='{"x": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6,
        1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0, 3.1, 3.2]]}'
for c in "$name-a" "$name-b"; do
    receipt="$work/$c.receipt"
    "$MESH" run tiny-mlp --bootstrap "$work/boot.txt" --target "${peer[$c]}" \
        --input "$input" --json --receipt-out "$receipt" >"$work/$c.run.json" ||
        fail "mesh run against $c"
    worker="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["worker"])' "$work/$c.run.json")"
    [ "$worker" = "${peer[$c]}" ] || fail "task for $c answered by $worker"
    "$MESH" verify "$receipt" --task "$receipt.task" --output "$receipt.output" ||
        fail "mesh verify of the receipt from $c"
    step "verified receipt from $c (${peer[$c]})"
done

# --- 5. non-root, healthy ---------------------------------------------------------------
for c in "$name-a" "$name-b"; do
    uid="$(podman_cmd exec "$c" id -u)"
    [ "$uid" != 0 ] || fail "$c runs as root"
    podman_cmd healthcheck run "$c" || fail "the HEALTHCHECK of $c"
    step "$c runs as uid $uid and is healthy"
done

# --- 6. metrics and status ----------------------------------------------------------
"$PY" - "http://127.0.0.1:$metrics_port_a/metrics" <<'PY' || fail "the metrics endpoint"
import re, sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
def value(pattern):
    found = re.search("^" + pattern + r" (\S+)$", body, flags=re.MULTILINE)
    assert found, f"no {pattern} in:\n{body[:3000]}"
    return float(found.group(1))
ok = value(r'mesh_tasks_total\{code="ok",model="tiny-mlp"\}')
receipts = value(r"mesh_receipts_issued_total")
assert ok >= 1 and receipts >= 1, (ok, receipts)
print(f"  {sys.argv[1]}: {len(body.splitlines())} lines; tasks ok {ok:.0f}, receipts {receipts:.0f}")
PY
status="$(podman_cmd exec "$name-a" mesh status 2>&1)" || { echo "$status" >&2; fail "mesh status in $name-a"; }
grep -q "^node ${peer[$name-a]}: ready" <<<"$status" || { echo "$status" >&2; fail "mesh status: not ready"; }
step "metrics count the served task; mesh status in $name-a: ready"

# --- 7. graceful stop; the key stays ----------------------------------------------------
step "podman stop $name-a (SIGTERM: drain)"
podman_cmd stop --time "$STOP_TIMEOUT" "$name-a" >/dev/null 2>>"$work/podman.err" ||
    { cat "$work/podman.err" >&2; fail "podman stop"; }
code="$(podman_cmd inspect --format '{{.State.ExitCode}}' "$name-a")"
[ "$code" = 0 ] || fail "$name-a exited $code after SIGTERM (want 0: drained)"
again="$(podman_cmd run --rm "${PODMAN_ULIMITS[@]}" --volume "$name-a:/var/lib/mesh" "$TAG" \
    mesh peer-id /var/lib/mesh/node.key 2>>"$work/podman.err")" ||
    { cat "$work/podman.err" >&2; fail "reading the key in the volume"; }
[ "$again" = "${peer[$name-a]}" ] || fail "the key in the volume is $again, not ${peer[$name-a]}"
step "exit code 0; the volume keeps the key of ${peer[$name-a]}"

step "PASSED"
