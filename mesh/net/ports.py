"""Refuse a listen address whose TCP port another process already holds.

py-libp2p 0.8.1 opens its listeners with ``SO_REUSEPORT`` (for TCP hole
punching), so a second node started on a port in use binds it too, starts
without a word, and the kernel splits incoming connections between the two
processes. Before the host starts we bind each listen address once with a plain
socket: no ``SO_REUSEPORT``, so the kernel refuses it while anyone listens
there, and ``SO_REUSEADDR``, so a port left in TIME_WAIT by a node that just
stopped is not mistaken for one in use. The probe is closed before the host
binds; a process that grabs the port in between is not caught (a race of
milliseconds, against a mistake made by hand).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from mesh.errors import ConfigError
from mesh.net.multiaddrs import parse_listen_addr


def check_listen_ports(listen: Sequence[str]) -> None:
    """Raise ConfigError naming the first listen address whose port is in use.

    Port 0 (any free port) is never checked.

    Raises:
        ConfigError: a bad listen address, or its port is taken (or cannot be bound).
    """
    for text in listen:
        family, host, port = _ip_and_port(text)
        if port == 0:
            continue
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # Match the listener: an ip6 address covers only IPv6.
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"cannot listen on {text}: TCP port {port} is already in use "
                    "(another node or program listens there; pick another --listen port)"
                ) from exc
            raise ConfigError(f"cannot listen on {text}: {exc.strerror or exc}") from exc
        finally:
            probe.close()


def _ip_and_port(text: str) -> tuple[socket.AddressFamily, str, int]:
    addr = parse_listen_addr(text)
    protocols = [p.name for p in addr.protocols()]
    ip_name = protocols[0]
    host = addr.value_for_protocol(ip_name)
    port = int(addr.value_for_protocol("tcp"))
    family = socket.AF_INET6 if ip_name == "ip6" else socket.AF_INET
    return family, str(host), port
