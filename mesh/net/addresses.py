"""Peer ids and multiaddrs between our strings and libp2p's objects."""

from __future__ import annotations

import multiaddr
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from mesh.errors import ConfigError
from mesh.net.multiaddrs import parse_multiaddr


def parse_peer_id(text: str) -> ID:
    """A base58 PeerID. Raises ConfigError."""
    try:
        return ID.from_base58(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a peer id: {text!r}") from exc


def strip_p2p(addr: multiaddr.Multiaddr) -> str:
    """The transport part of ``addr``, without ``/p2p/<peer id>``."""
    return str(addr).split("/p2p/", 1)[0]


def bootstrap_info(addr: str) -> PeerInfo:
    """The PeerInfo of a bootstrap multiaddr. Raises ConfigError without /p2p/."""
    parsed = parse_multiaddr(addr, where="bootstrap address")
    try:
        return info_from_p2p_addr(parsed)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bootstrap address without /p2p/<peer id>: {addr!r}") from exc
