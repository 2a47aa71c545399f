"""Independent workers: another key and, where possible, another network.

A re-check is worth something only if the second worker is not the first one
under another name. Keys are free, so the client also looks at where workers
are: the addresses in their signed capacity records. Two workers share a
*network prefix* when one of their advertised addresses falls in the same IPv4
/24, the same IPv6 /48 or the same DNS name. When choosing a checker the client
prefers, in order: a worker sharing no prefix with the ones already involved,
then one whose addresses it does not know yet, then one sharing a prefix; and
among equals, one with a confirmed history here (a newcomer is audited, not
trusted to audit). On a testnet on 127.0.0.1 every worker shares the loopback
prefix, so only keys differ there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection

from mesh.client.reputation import NEWCOMER_CHECKS, Reputation
from mesh.core.messages import CapacityRecord

# Ranks (lower is preferred), before the history tie-break.
_OTHER_NETWORK = 0
_UNKNOWN_NETWORK = 1
_SAME_NETWORK = 2

RecordOf = Callable[[str], CapacityRecord | None]


def network_prefix(addr: str) -> str | None:
    """The network an address lies in (``ip4:10.1.2``, ``ip6:2001:db8:1``, ``dns:host``).

    None for an address it cannot read.
    """
    parts = addr.split("/")
    if len(parts) < 3:
        return None
    proto, host = parts[1], parts[2]
    try:
        if proto == "ip4":
            return "ip4:" + ".".join(str(ipaddress.IPv4Address(host)).split(".")[:3])
        if proto == "ip6":
            hextets = ipaddress.IPv6Address(host).exploded.split(":")[:3]
            return "ip6:" + ":".join(hextets)
    except ValueError:
        return None
    if proto in ("dns", "dns4", "dns6") and host:
        return "dns:" + host.lower()
    return None


def prefixes(record: CapacityRecord | None) -> frozenset[str]:
    """The network prefixes of a capacity record's addresses (empty when unknown)."""
    if record is None:
        return frozenset()
    return frozenset(p for p in (network_prefix(a) for a in record.addrs) if p is not None)


def independence_rank(
    involved: Collection[str], *, record_of: RecordOf, reputation: Reputation
) -> Callable[[str], int]:
    """A rank for :meth:`TaskSender.send`: independent of ``involved`` first, then history.

    ``involved`` is read at each call, so a set that grows while workers are
    chosen (replicas sent at once) is honoured.
    """

    def rank(peer_id: str) -> int:
        taken = frozenset().union(*(prefixes(record_of(p)) for p in involved))
        own = prefixes(record_of(peer_id))
        if not own:
            network = _UNKNOWN_NETWORK
        elif own & taken:
            network = _SAME_NETWORK
        else:
            network = _OTHER_NETWORK
        row = reputation.record(peer_id)
        newcomer = row is None or row.confirmed < NEWCOMER_CHECKS
        return 2 * network + int(newcomer)

    return rank
