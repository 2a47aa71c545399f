"""Multiaddrs from text: the one parser, and the two shapes the mesh accepts.

Imports only py-multiaddr (a few ms), never libp2p, so bootstrap files and
options are checked before anything heavy loads. py-multiaddr raises its own
``Error`` tree (``StringParseError`` is also a ``ValueError``) for bad text and
``TypeError`` for a non-string; all become :class:`mesh.errors.ConfigError`
naming where the text came from.
"""

from __future__ import annotations

import multiaddr
from multiaddr.exceptions import Error as MultiaddrError

from mesh.errors import ConfigError

_PARSE_ERRORS = (MultiaddrError, ValueError, TypeError)


def parse_multiaddr(text: str, *, where: str = "multiaddr") -> multiaddr.Multiaddr:
    """Parse ``text``. Raises ConfigError naming ``where`` (an option, ``file:line``)."""
    try:
        return multiaddr.Multiaddr(text)
    except _PARSE_ERRORS as exc:
        raise ConfigError(f"{where}: not a multiaddr: {text!r} ({exc})") from exc


def parse_peer_addr(text: str, *, where: str = "multiaddr") -> str:
    """A peer's address: a transport part, then ``/p2p/<peer id>`` last; canonical form.

    Without the peer id a dialer cannot check who answered (Noise authenticates
    the key it expects).

    Raises:
        ConfigError: unparsable, or without a final ``/p2p/<peer id>``.
    """
    addr = parse_multiaddr(text, where=where)
    protocols = [p.name for p in addr.protocols()]
    if "p2p" not in protocols:
        raise ConfigError(f"{where}: missing /p2p/<peer id> in {text!r}")
    if protocols[-1] != "p2p" or protocols.count("p2p") != 1:
        raise ConfigError(f"{where}: /p2p/<peer id> must end the address: {text!r}")
    if len(protocols) < 2:
        raise ConfigError(f"{where}: no transport address before /p2p/ in {text!r}")
    return str(addr)


def parse_listen_addr(text: str, *, where: str = "listen address") -> multiaddr.Multiaddr:
    """An address to listen on: ``/ip4|ip6/<addr>/tcp/<port>`` only (no QUIC, no WebSocket).

    Raises:
        ConfigError: unparsable, or not plain TCP over IP.
    """
    addr = parse_multiaddr(text, where=where)
    names = [p.name for p in addr.protocols()]
    if len(names) != 2 or names[0] not in ("ip4", "ip6") or names[1] != "tcp":
        raise ConfigError(f"{where} must be /ip4|ip6/<addr>/tcp/<port>: {text!r}")
    return addr
