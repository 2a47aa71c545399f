"""Who a task comes from, at three levels: address prefix, transport peer, client key.

A stranger can make client keys and PeerIDs for free, so fairness by key alone
(or by PeerID) gives a Sybil as many shares as it has identities. Addresses are
what costs: a node shares its capacity first between remote address prefixes,
then between the transport peers within a prefix, then between the client keys
of a peer (:mod:`mesh.node.fairshare`, :mod:`mesh.node.fairqueue`).

Prefixes: ``/24`` for IPv4 and ``/48`` for IPv6 (one operator's usual share of
addresses: a home or a small hosting allocation); an IPv4-mapped IPv6 address
counts as its IPv4 address.

Loopback gets no exception: every client of a single-machine testnet that dials
``127.0.0.1`` shares the one source ``/ip4/127.0.0.0/24``, and fairness between
them comes from the peer and key levels. That is also the honest limit of the
scheme: a Sybil with fresh PeerIDs *from your own address prefix* is
indistinguishable from many clients there. The tests and the ``attacks``
benchmark put the honest client on ``::1`` (its own prefix, as a client on
another network would be) when the attacker uses fresh PeerIDs.

A transport that gives no address (the in-memory network) makes each peer its
own prefix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPV4_PREFIX = 24
IPV6_PREFIX = 48


@dataclass(frozen=True, slots=True)
class Source:
    """Where a task comes from; fair shares are taken level by level, in field order.

    Attributes:
        prefix: the remote address prefix (``/ip4/203.0.113.0/24``), or ``peer:<id>``
            when the transport gives no address.
        peer: the transport PeerID (authenticated by the Noise handshake).
        key: the client key that signed the task.
    """

    prefix: str
    peer: str
    key: bytes

    @property
    def path(self) -> tuple[str, str, bytes]:
        """The levels, broadest first."""
        return (self.prefix, self.peer, self.key)


def source_of(peer_id: str, addr: str, client_key: bytes) -> Source:
    """The source of a task signed by ``client_key``, sent by ``peer_id`` from ``addr``."""
    return Source(address_prefix(addr) or f"peer:{peer_id}", peer_id, client_key)


def address_prefix(addr: str) -> str:
    """The ``/24`` or ``/48`` prefix of a multiaddr's IP (``/ip4/1.2.3.4/tcp/5``), or ``""``."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
        return ""
    try:
        ip = ipaddress.ip_address(parts[2])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        net4 = ipaddress.IPv4Network((int(ip), IPV4_PREFIX), strict=False)
        return f"/ip4/{net4.network_address}/{IPV4_PREFIX}"
    net6 = ipaddress.IPv6Network((int(ip), IPV6_PREFIX), strict=False)
    return f"/ip6/{net6.network_address}/{IPV6_PREFIX}"
