#!/usr/bin/env bash
# Build the node's container image (container/Containerfile) with podman.
#
# Usage: scripts/build-image.sh [TAG]          (default TAG: localhost/mesh-node:latest)
#
# Steps, each skipped when its result is already there:
#   1. podman, runc and debootstrap from apt, when missing (needs root);
#   2. the base image localhost/debian-base:bookworm from Debian's packages (debootstrap
#      --variant=minbase, slimmed, `podman import`), once: podman's image store caches it;
#   3. wheels of mesh's dependencies, built on this host with pip (torch pinned as
#      scripts/setup.sh pins it), cached under $MESH_IMAGE_CACHE by a key of the
#      dependency list, the torch spec and the Python version, and rebuilt after
#      MESH_WHEEL_MAX_AGE_DAYS so security releases get in; mesh's own wheel every time;
#   4. `podman build` (its layer cache makes a rebuild after a code change cheap).
#
# Environment (all optional):
#   BASE_IMAGE              base of the image (default localhost/debian-base:bookworm, made
#                           here; for NVIDIA GPUs e.g. nvidia/cuda:12.6.3-runtime-ubuntu22.04)
#   MESH_TORCH_SPEC         the torch requirement (default torch==2.13.0, as scripts/setup.sh)
#   PYTHON                  the Python that builds the wheels (default python3). Its minor
#                           version must be the image's (IMAGE_PYTHON), since wheels with
#                           compiled code are built for one.
#   IMAGE_PYTHON            the image's Debian/Ubuntu Python package (default python3.11)
#   MESH_IMAGE_CACHE        cache folder (default ${XDG_CACHE_HOME:-~/.cache}/mesh-image)
#   MESH_WHEEL_MAX_AGE_DAYS rebuild cached dependency wheels older than this (default 7)
#   MESH_DEBIAN_MIRROR      Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   MESH_PODMAN_RUNTIME, MESH_NOFILE: see container/podman.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

TAG="${1:-localhost/mesh-node:latest}"
DEFAULT_BASE="localhost/debian-base:bookworm"
BASE_IMAGE="${BASE_IMAGE:-$DEFAULT_BASE}"
TORCH_SPEC="${MESH_TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"
IMAGE_PYTHON="${IMAGE_PYTHON:-python3.11}"
CACHE="${MESH_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-image}"
MAX_AGE_DAYS="${MESH_WHEEL_MAX_AGE_DAYS:-7}"
MIRROR="${MESH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

started=$(date +%s)
step() { echo "build-image: [$(($(date +%s) - started)) s] $*"; }

# shellcheck source=container/podman.sh
source container/podman.sh

# --- 1. tools -------------------------------------------------------------------------
missing=()
command -v podman >/dev/null || missing+=(podman)
[ -x "$MESH_PODMAN_RUNTIME" ] || missing+=(runc)
if [ "$BASE_IMAGE" = "$DEFAULT_BASE" ]; then command -v debootstrap >/dev/null || missing+=(debootstrap); fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "build-image: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
        exit 1
    fi
    step "installing ${missing[*]} with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# --- 2. the base image ----------------------------------------------------------------
if [ "$BASE_IMAGE" = "$DEFAULT_BASE" ] && ! podman_cmd image exists "$BASE_IMAGE"; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "build-image: debootstrap needs root to make $BASE_IMAGE (or set BASE_IMAGE)" >&2
        exit 1
    fi
    step "making $BASE_IMAGE with debootstrap (once; podman keeps it)"
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/mesh-rootfs.XXXXXX")"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
        tail -20 "$rootfs.log" >&2
        exit 1
    }
    rm -f "$rootfs.log"
    bash container/slim-rootfs.sh "$rootfs" "$MIRROR"
    tar -C "$rootfs" -c . | podman_cmd import --quiet --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

# --- 3. wheels ------------------------------------------------------------------------
py_version="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if [ "python$py_version" != "$IMAGE_PYTHON" ]; then
    echo "build-image: PYTHON is $py_version but the image runs $IMAGE_PYTHON;" \
        "wheels with compiled code would not fit (set PYTHON to a $IMAGE_PYTHON)" >&2
    exit 1
fi
# What the dependency wheels depend on: the [project] dependencies, the torch spec, the
# Python and the platform. Code changes do not touch it, so CI reuses the wheels.
requirements="$("$PYTHON" - "$TORCH_SPEC" <<'PY'
import sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
# torch first and pinned, as scripts/setup.sh installs it; the bare range in
# pyproject.toml would otherwise resolve to the newest (CUDA) build.
print("\n".join([sys.argv[1], *deps]))
PY
)"
key="$(printf '%s\n%s\n%s\n' "$requirements" "$py_version" "$(uname -m)" | sha256sum | cut -c1-16)"
deps_dir="$CACHE/wheels-$key"
if [ -f "$deps_dir/complete" ] && [ -z "$(find "$deps_dir/complete" -mtime +"$MAX_AGE_DAYS")" ]; then
    step "dependency wheels cached ($deps_dir)"
else
    step "building dependency wheels into $deps_dir"
    rm -rf "$deps_dir" "$deps_dir.tmp"
    mkdir -p "$deps_dir.tmp"
    printf '%s\n' "$requirements" >"$deps_dir.tmp/requirements.txt"
    if ! "$PYTHON" -m pip wheel --wheel-dir "$deps_dir.tmp" \
        -r "$deps_dir.tmp/requirements.txt" >"$CACHE/pip-wheel.log" 2>&1; then
        tail -30 "$CACHE/pip-wheel.log" >&2
        exit 1
    fi
    touch "$deps_dir.tmp/complete"
    mv "$deps_dir.tmp" "$deps_dir"
    # Keep one set: older keys are dead weight (~250 MB each).
    find "$CACHE" -maxdepth 1 -name 'wheels-*' ! -name "wheels-$key" -exec rm -rf {} +
fi

# The build context: the container/ files and the wheels (hard links: no copy).
context="$CACHE/context"
rm -rf "$context"
mkdir -p "$context/wheels"
cp container/Containerfile container/entrypoint.py container/healthcheck.py "$context/"
cp -al "$deps_dir" "$context/wheels/deps"
step "building the mesh wheel"
# Dated by the last commit, not by now: an unchanged tree gives a byte-identical wheel,
# so podman's layer cache holds and a rebuild without changes costs seconds.
if ! SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)" "$PYTHON" -m pip wheel --no-deps --wheel-dir "$context/wheels/mesh" "$REPO" \
    >"$CACHE/pip-wheel-mesh.log" 2>&1; then
    tail -30 "$CACHE/pip-wheel-mesh.log" >&2
    exit 1
fi

# --- 4. the image ---------------------------------------------------------------------
old_id="$(podman_cmd image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
step "podman build $TAG (base $BASE_IMAGE)"
# --format docker: OCI image configs have no HEALTHCHECK; podman drops it otherwise.
podman_cmd build --network host "${PODMAN_ULIMITS[@]}" --format docker \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg PYTHON="$IMAGE_PYTHON" \
    --tag "$TAG" --file "$context/Containerfile" "$context"
# The image this tag named before is dead weight on a CI machine (its layers that the new
# one shares stay); in use by a container, it stays.
new_id="$(podman_cmd image inspect --format '{{.Id}}' "$TAG")"
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    podman_cmd rmi "$old_id" >/dev/null 2>&1 || true
fi
size="$(podman_cmd image inspect --format '{{.Size}}' "$TAG")"
step "built $TAG: $((size / 1000000)) MB"
