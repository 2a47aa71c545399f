"""Probe a libp2p listener on a fresh TCP connection: is ``peer_id`` answering at ``addr``?

The dial-back check (:mod:`mesh.node.dialback`) needs what a libp2p dial cannot
give: a host already connected to a peer reuses that connection (we allow one
per peer), so ``host.connect`` says nothing about whether a given address is
reachable. This opens a new TCP connection to the address, negotiates Noise over
multistream-select and runs the Noise XX handshake as initiator, which checks
that the remote end holds the private key of ``peer_id`` (the library verifies
the identity key's signature over the Noise static key against the expected
PeerID). Then it closes the connection: no muxer, no streams, no entry in any
peer table.

What a pass proves: from this host, a TCP connection to ``addr`` reaches a libp2p
listener that proves it is ``peer_id``. What it does not: reachability from
elsewhere (another network may be firewalled differently), or over any other
transport.

The probe's own identity is a throwaway key: the remote end learns nothing about
who probed beyond the source address.
"""

from __future__ import annotations

import logging

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.security_multistream import SecurityMultistream

from mesh.errors import DeadlineExceeded, PeerUnavailable
from mesh.net.addresses import parse_peer_id
from mesh.net.endpoints import tcp_endpoint

logger = logging.getLogger(__name__)

# What negotiating or handshaking with a listener that is not what we expect
# raises (closed early, garbage, another key): the library's own errors
# (MultiselectError, PeerIDMismatchesPubkey, ...), a broken socket, and decode
# errors of garbage the library lets through.
_HANDSHAKE_ERRORS = (BaseLibp2pError, OSError, trio.BrokenResourceError, EOFError, ValueError)


async def probe_listener(addr: str, peer_id: str, *, timeout: float) -> None:  # noqa: ASYNC109
    """Check that ``peer_id`` completes a Noise handshake on a new connection to ``addr``.

    Raises:
        ConfigError: ``addr`` is not a TCP address (see :func:`tcp_endpoint`).
        DeadlineExceeded: no answer within ``timeout``.
        PeerUnavailable: nothing listens there, or not libp2p, or not ``peer_id``.
    """
    host, port = tcp_endpoint(addr)
    expected = parse_peer_id(peer_id)
    try:
        with trio.fail_after(timeout):
            try:
                sock = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise PeerUnavailable(f"cannot connect to {addr}: {exc.strerror or exc}") from exc
            raw = RawConnection(TrioTCPStream(sock), initiator=True)
            try:
                noise = NoiseTransport(
                    create_new_key_pair(), noise_privkey=create_x25519_key_pair().private_key
                )
                security = SecurityMultistream({TProtocol(NOISE_PROTOCOL_ID): noise})
                secure = await security.secure_outbound(raw, expected)
                await secure.close()
            except _HANDSHAKE_ERRORS as exc:
                raise PeerUnavailable(
                    f"{addr} answers but not as libp2p peer {peer_id}: {exc!r}"
                ) from exc
            finally:
                with trio.CancelScope(shield=True):
                    await sock.aclose()
    except trio.TooSlowError as exc:
        raise DeadlineExceeded(f"no libp2p handshake at {addr} within {timeout} s") from exc
