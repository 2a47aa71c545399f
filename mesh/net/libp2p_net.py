"""The libp2p network adapter: :func:`open_libp2p_network` (the only libp2p user).

It starts the host (TCP + Noise + Yamux, see :mod:`mesh.net.host`), the
Kademlia DHT, gossipsub and our own tasks in ONE task's nested ``async with``
and stops them in reverse order on exit (notes, bug 11: lifetimes split across
cancel scopes corrupt trio's scope stack). The running peer is a
:class:`~mesh.net.libp2p_peer.Libp2pNetwork`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11 as GOSSIPSUB_V11
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V12 as GOSSIPSUB_V12
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from mesh.errors import ConfigError, NetworkError, PeerUnavailable
from mesh.net import dht as dht_glue
from mesh.net.addresses import bootstrap_info
from mesh.net.host import build_host
from mesh.net.inbound import InboundLimits
from mesh.net.interface import PeerAddr
from mesh.net.libp2p_peer import DEFAULT_INBOUND, Libp2pNetwork, NetTimeouts
from mesh.net.logs import apply_library_log_policy
from mesh.net.multiaddrs import parse_listen_addr
from mesh.net.ports import check_listen_ports

__all__ = ["InboundLimits", "Libp2pNetwork", "NetTimeouts", "open_libp2p_network"]

logger = logging.getLogger(__name__)

# Gossipsub heartbeat: 1 s measured 41 ms median delivery on 10 nodes.
GOSSIP_HEARTBEAT_S = 1
# Per neighbour and topic; load updates from 500 peers every 5 s fit.
GOSSIP_MAX_PER_TOPIC_PER_S = 100.0
# NetTimeouts is frozen: one shared default instance is safe.
DEFAULT_TIMEOUTS = NetTimeouts()


@asynccontextmanager
async def open_libp2p_network(
    *,
    identity_seed: bytes,
    listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
    announce: Sequence[str] = (),
    bootstrap: Sequence[str] = (),
    dht_server: bool = True,
    timeouts: NetTimeouts = DEFAULT_TIMEOUTS,
    require_bootstrap: bool = False,
    inbound: InboundLimits = DEFAULT_INBOUND,
) -> AsyncIterator[Libp2pNetwork]:
    """Start a libp2p peer and yield it as a :class:`Libp2pNetwork`.

    Args:
        identity_seed: the 32-byte Ed25519 seed of the key file (the PeerID is its key).
        listen: TCP multiaddrs to listen on (port 0 picks a free port).
        announce: the addresses others dial, advertised instead of the listen
            addresses (see :func:`mesh.net.host.build_host`).
        bootstrap: multiaddrs with ``/p2p/<peer id>`` to join through.
        dht_server: answer DHT queries (False: client mode, for short-lived clients).
        timeouts: deadlines of library calls.
        require_bootstrap: raise if bootstrap peers were given and none answered.
        inbound: caps on inbound request streams (slots, progress, memory).

    Raises:
        ConfigError: bad seed or address, or a listen port already in use.
        PeerUnavailable: see ``require_bootstrap``.
    """
    apply_library_log_policy()
    # The library binds with SO_REUSEPORT and would share a port in use without a word.
    check_listen_ports(listen)
    host = build_host(identity_seed=identity_seed, listen=listen, announce=announce)
    listen_addrs = [parse_listen_addr(a) for a in listen]
    boot_infos = [bootstrap_info(a) for a in bootstrap]
    gossipsub = GossipSub(
        # v1.2 then v1.1: the pair measured in the notes (41 ms median delivery).
        protocols=[TProtocol(GOSSIPSUB_V12), TProtocol(GOSSIPSUB_V11)],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=GOSSIP_HEARTBEAT_S,
        # The library drops messages past 10/s per topic from each neighbour; a
        # relay forwards everyone's load updates (N peers every T s is N/T per
        # link), so the default would silently drop them past ~20-50 peers.
        max_messages_per_topic_per_second=GOSSIP_MAX_PER_TOPIC_PER_S,
    )
    pubsub = Pubsub(host, gossipsub)
    # strict_validation: without it a namespace with no validator registered
    # (ours before set_record_validator, or any made-up one) is stored unchecked.
    dht = KadDHT(host, DHTMode.SERVER if dht_server else DHTMode.CLIENT, strict_validation=True)
    dht_glue.install_local_cache_bypass(dht)
    # An error raised by the caller's block is kept aside and re-raised once
    # everything stopped, so it comes out as itself, not wrapped in six
    # ExceptionGroups (one per nursery below). Cancellation passes through.
    body_error: Exception | None = None
    # Host, then services, then our own tasks; each exits before the one it
    # depends on, all in this one task (bug 11: no lifetimes split across scopes).
    async with (
        host.run(listen_addrs),
        background_trio_service(dht),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
        trio.open_nursery() as nursery,
    ):
        net = Libp2pNetwork(
            host=host,
            dht=dht,
            pubsub=pubsub,
            nursery=nursery,
            timeouts=timeouts,
            inbound=inbound,
        )
        try:
            try:
                await _start(nursery, net, pubsub, dht, boot_infos, timeouts, require_bootstrap)
            except Exception as exc:
                body_error = exc
            else:
                logger.info("libp2p peer %s listening on %s", net.peer_id, net.listen_addrs())
                try:
                    yield net
                except Exception as exc:
                    body_error = exc
        finally:
            await net._aclose()
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


async def _start(
    nursery: trio.Nursery,
    net: Libp2pNetwork,
    pubsub: Pubsub,
    dht: KadDHT,
    boot: Sequence[PeerInfo],
    timeouts: NetTimeouts,
    required: bool,
) -> None:
    try:
        with trio.fail_after(timeouts.pubsub + timeouts.dial):
            await pubsub.wait_until_ready()
    except trio.TooSlowError as exc:
        raise NetworkError("pubsub did not start") from exc
    if not net.listen_addrs():
        # py-libp2p 0.8.1 logs a failed bind and carries on listening nowhere.
        raise ConfigError("could not listen on any of the given addresses")
    await _join(net, dht, boot, timeouts=timeouts, required=required)
    nursery.start_soon(net._maintain)


async def _join(
    net: Libp2pNetwork,
    dht: KadDHT,
    boot: Sequence[PeerInfo],
    *,
    timeouts: NetTimeouts,
    required: bool,
) -> None:
    """Dial bootstrap peers concurrently, each under its own deadline, then refresh."""
    if not boot:
        return
    reached: list[str] = []
    peers = [PeerAddr(i.peer_id.to_base58(), tuple(str(a) for a in i.addrs)) for i in boot]
    net._bootstrap = tuple(peers)

    async def dial(peer: PeerAddr) -> None:
        try:
            await net.connect(peer, timeout=timeouts.dial)
        except NetworkError as exc:
            logger.warning("bootstrap peer %s unreachable: %s", peer.peer_id, exc)
            return
        reached.append(peer.peer_id)

    async with trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(dial, peer)
    if not reached:
        if required:
            raise PeerUnavailable(f"none of {len(boot)} bootstrap peers answered")
        logger.warning("no bootstrap peer answered; running alone")
        return
    # bug 9: fill the routing table from the bootstrap peers' neighbours.
    with trio.move_on_after(timeouts.dht):
        await dht.refresh_routing_table()
