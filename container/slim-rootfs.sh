#!/usr/bin/env bash
# Slim a fresh `debootstrap --variant=minbase bookworm` tree into a container base, the
# way Debian's own -slim images are made: no .deb cache, no apt lists, no docs beyond
# the copyright files, no man pages or translations, and dpkg told to keep it that way
# for whatever the Containerfile installs later. Also points apt at the security and
# updates suites, so the image's `apt-get install` gets fixed packages.
#
# Usage: container/slim-rootfs.sh ROOTFS MIRROR
set -euo pipefail
root="${1:?usage: $0 ROOTFS MIRROR}"
mirror="${2:?usage: $0 ROOTFS MIRROR}"

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES

cat >"$root/etc/dpkg/dpkg.cfg.d/01-container-slim" <<'DPKG'
# Containers need no documentation; copyright files stay (licences).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
DPKG

cat >"$root/etc/apt/apt.conf.d/01-container-slim" <<'APT'
# No package cache in image layers, and only what a package needs.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT

rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
    "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/usr/share/lintian/*
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
