"""TCP endpoints of multiaddrs, and the addresses a node can honestly advertise.

A node listening on ``/ip4/0.0.0.0/tcp/4001`` is reachable on every interface,
but ``0.0.0.0`` is no address anyone can dial (on Linux a dial to it reaches the
*dialler's own* loopback, which hides the mistake in single-machine tests). When
the operator announces nothing, :func:`expand_unspecified` replaces such an
address by one per interface address of this host: what the host could be
reached on, from somewhere. Behind NAT none of them is the public address: that
is what ``--announce`` and the reachability self-check are for.

Standard library and psutil only (psutil is already a dependency of
py-multiaddr), never libp2p.
"""

from __future__ import annotations

import ipaddress
import socket

import psutil

from mesh.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def tcp_endpoint(addr: str) -> tuple[str, int]:
    """``(ip, port)`` of ``/ip4/<ip>/tcp/<port>`` or ``/ip6/<ip>/tcp/<port>``.

    A final ``/p2p/<peer id>`` is allowed and ignored.

    Raises:
        ConfigError: another form (DNS names, other transports), a bad address or port.
    """
    parts = addr.strip("/").split("/")
    if len(parts) < 4 or parts[0] not in ("ip4", "ip6") or parts[2] != "tcp":
        raise ConfigError(f"not an /ip4|ip6/<address>/tcp/<port> address: {addr!r}")
    if len(parts) > 4 and not (len(parts) == 6 and parts[4] == "p2p"):
        raise ConfigError(f"unexpected parts after the port in {addr!r}")
    try:
        ip = ipaddress.ip_address(parts[1])
        port = int(parts[3])
    except ValueError as exc:
        raise ConfigError(f"bad address or port in {addr!r}") from exc
    if (ip.version == 4) != (parts[0] == "ip4") or not 0 <= port < 65536:
        raise ConfigError(f"bad address or port in {addr!r}")
    return str(ip), port


def observed_ip(transport_addr: str) -> IPAddress | None:
    """The IP of a connection's remote transport address (``Inbound.addr``), or None."""
    try:
        host, _ = tcp_endpoint(transport_addr)
    except ConfigError:
        return None
    return normalize_ip(ipaddress.ip_address(host))


def normalize_ip(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as the IPv4 address it maps."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def interface_ips() -> list[IPAddress]:
    """This host's interface addresses (IPv4 and IPv6, link-local IPv6 left out).

    Non-loopback addresses come first: they are what other machines may dial.
    """
    found: list[IPAddress] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(entry.address.split("%", 1)[0])
            except ValueError:
                continue
            if ip.is_link_local:
                continue  # needs a zone (%eth0) to dial: useless in an advert
            if ip not in found:
                found.append(ip)
    return sorted(found, key=lambda ip: (ip.is_loopback, ip.version, int(ip)))


def expand_unspecified(addrs: list[str], *, ips: list[IPAddress] | None = None) -> list[str]:
    """``addrs`` with each ``0.0.0.0`` (``::``) address replaced by one per interface IP.

    Args:
        addrs: multiaddrs, with or without ``/p2p/<peer id>``; other forms pass through.
        ips: the interface addresses (default: :func:`interface_ips`).
    """
    result: list[str] = []
    for addr in addrs:
        try:
            host, _ = tcp_endpoint(addr)
        except ConfigError:
            result.append(addr)
            continue
        ip = ipaddress.ip_address(host)
        if not ip.is_unspecified:
            result.append(addr)
            continue
        prefix = f"/ip{ip.version}/{host}/"
        rest = addr[addr.index(prefix) + len(prefix) :]
        pool = interface_ips() if ips is None else ips
        for local in pool:
            if local.version == ip.version:
                result.append(f"/ip{ip.version}/{local}/{rest}")
    return list(dict.fromkeys(result))
