# shellcheck shell=bash
# Sourced by scripts/build-image.sh and scripts/container-smoke.sh: how to call podman here.
#
# podman's default runtime (crun) fails on these machines ("setrlimit RLIMIT_NOFILE:
# Operation not permitted", then "cgroups in hybrid mode not supported"); runc with
# the cgroupfs manager and explicit ulimits works (shared/notes/containers.md). runc
# and cgroupfs work on ordinary hosts too, so the scripts always use them.
#
# Environment (optional):
#   MESH_PODMAN_RUNTIME  the OCI runtime binary (default /usr/sbin/runc)
#   MESH_NOFILE          open-files limit inside containers (default 16384: a node holds one
#                        socket per peer connection; it must not exceed the caller's hard
#                        limit, `ulimit -Hn`, which is 20000 on these machines)

MESH_PODMAN_RUNTIME="${MESH_PODMAN_RUNTIME:-/usr/sbin/runc}"
MESH_NOFILE="${MESH_NOFILE:-16384}"
# nproc bounds threads too (torch and trio's thread pool); 4096 leaves room on a many-core host.
PODMAN_ULIMITS=(--ulimit "nofile=${MESH_NOFILE}:${MESH_NOFILE}" --ulimit "nproc=4096:4096")

podman_cmd() {
    podman --runtime "$MESH_PODMAN_RUNTIME" --cgroup-manager=cgroupfs "$@"
}
