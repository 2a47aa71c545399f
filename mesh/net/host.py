"""Build a libp2p host the one safe way: TCP + Noise only + Yamux only.

py-libp2p 0.8.1 defaults are unsafe or slow (notes/libp2p-0.8.1.md):
- bug 2: the default security options also offer plaintext and SECIO, letting a
  dialer present someone else's PeerID; we pass Noise and nothing else;
- Mplex is ~6x slower than Yamux and warns constantly; we pass Yamux only;
- bug 1: every dial stalls 250 ms with 3 connections per peer; we allow one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from mesh.errors import ConfigError
from mesh.net.endpoints import expand_unspecified
from mesh.net.multiaddrs import parse_listen_addr, parse_multiaddr

SEED_BYTES = 32


def peer_id_from_seed(identity_seed: bytes) -> str:
    """The base58 PeerID that ``identity_seed`` gives (same key as receipts)."""
    _check_seed(identity_seed)
    key_pair = create_new_key_pair(identity_seed)
    return ID.from_pubkey(key_pair.public_key).to_base58()


def build_host(
    *, identity_seed: bytes, listen: Sequence[str], announce: Sequence[str] = ()
) -> IHost:
    """Create (not start) a host whose identity is the Ed25519 key of ``identity_seed``.

    Args:
        identity_seed: the 32-byte Ed25519 seed of the key file.
        listen: multiaddrs to listen on (TCP only).
        announce: the addresses others dial (``--announce``), advertised in place of
            the listen addresses (identify, provider records); empty: the listen
            addresses, each ``0.0.0.0`` one replaced by this host's interface addresses.

    Raises:
        ConfigError: a bad seed or listen address.
    """
    _check_seed(identity_seed)
    if not listen:
        raise ConfigError("no listen address given")
    listen_addrs = [parse_listen_addr(text) for text in listen]
    key_pair = create_new_key_pair(identity_seed)
    # The Noise static key is separate from the identity key by design of the
    # Noise XX handshake; the identity key signs it inside the handshake.
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=listen_addrs,
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        addrs_factory=_advertised(announce),
    )


def _advertised(
    announce: Sequence[str],
) -> Callable[[list[multiaddr.Multiaddr]], list[multiaddr.Multiaddr]]:
    """What the host tells peers it listens on (get_addrs: identify, provider records)."""
    fixed = [parse_multiaddr(a, where="announce address") for a in announce]

    def addrs(candidates: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
        if fixed:
            return list(fixed)
        expanded = expand_unspecified([str(a) for a in candidates])
        return [multiaddr.Multiaddr(a) for a in expanded]

    return addrs


def _check_seed(identity_seed: bytes) -> None:
    if len(identity_seed) != SEED_BYTES:
        raise ConfigError(f"identity seed must be {SEED_BYTES} bytes, got {len(identity_seed)}")
