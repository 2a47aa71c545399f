#!/opt/mesh/bin/python
"""The node image's HEALTHCHECK: exit 0 when the node is ready, 1 when not.

Ready means what the node's ``/healthz`` says: serving tasks and advertised in the
DHT (a draining or starting node answers 503). The URL is ``MESH_HEALTH_URL`` when
set (e.g. ``http://127.0.0.1:9464/healthz``), else ``<status.url>/healthz`` from the
file a running node keeps in its data dir (``$MESH_HOME/node.key.data/status.url``
for the image's key; ``mesh node`` serves its endpoint on loopback by default).
Without either -- the endpoint turned off with ``--metrics off``, or a data dir
elsewhere -- the node process (PID 1: the entrypoint runs ``mesh node`` in-process)
must hold a listening TCP socket, its libp2p listener, that accepts a connection.
Standard library only, and no mesh import, so a check costs milliseconds rather
than a Python start with torch.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import urllib.request
from pathlib import Path

NODE_PID = 1
TIMEOUT_S = 5.0  # well inside the HEALTHCHECK --timeout of 10 s
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def health_url() -> str | None:
    """MESH_HEALTH_URL, else the /healthz of the URL the node wrote to its data dir."""
    url = os.environ.get("MESH_HEALTH_URL")
    if url:
        return url
    home = Path(os.environ.get("MESH_HOME", "/var/lib/mesh"))
    try:
        base = (home / "node.key.data" / "status.url").read_text().strip()
    except OSError:
        return None
    return f"{base}/healthz" if base else None


def main() -> int:
    url = health_url()
    if url:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                status = response.status
        except OSError as exc:
            print(f"unhealthy: GET {url}: {exc}")
            return 1
        print(f"GET {url}: {status}")
        return 0 if 200 <= status < 300 else 1
    listeners = listening_addresses(NODE_PID)
    if not listeners:
        print(f"unhealthy: process {NODE_PID} has no listening TCP socket")
        return 1
    for host, port in listeners:
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT_S):
                print(f"node accepts connections on {host} port {port}")
                return 0
        except OSError as exc:
            print(f"{host} port {port}: {exc}")
    print("unhealthy: no listener accepted a connection")
    return 1


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(host to dial, port) of each listening TCP socket ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table, loopback in (("tcp", "127.0.0.1"), ("tcp6", "::1")):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6 in this kernel
        for line in lines:
            fields = line.split()
            if fields[3] != _LISTEN or fields[9] not in inodes:
                continue
            address, port = _decode(fields[1])
            host = loopback if address.is_unspecified else str(address)
            found.append((host, port))
    return found


def _decode(field: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """/proc/net/tcp's ``HEXADDR:HEXPORT``: the address in 32-bit words of host byte order."""
    hex_address, hex_port = field.split(":")
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if sys.byteorder == "big":
        words = raw
    return ipaddress.ip_address(words), int(hex_port, 16)


if __name__ == "__main__":
    sys.exit(main())
