"""Starting and stopping a libp2p network: identity, errors, clean exits."""

from __future__ import annotations

import pytest
import trio
from nacl.signing import SigningKey
from netsupport import FAST, networks, seed

from mesh.errors import ConfigError, PeerUnavailable
from mesh.net.host import peer_id_from_seed
from mesh.net.libp2p_net import open_libp2p_network

pytestmark = pytest.mark.integration

NOBODY = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"


async def test_peer_id_is_the_seed_key_and_addresses_carry_it() -> None:
    async with networks(1) as (net,):
        assert net.peer_id == peer_id_from_seed(seed(1))
        assert net.listen_addrs()
        assert all(a.endswith(f"/p2p/{net.peer_id}") for a in net.listen_addrs())
    # The receipts key (PyNaCl) and the transport identity are one key.
    from libp2p.peer.id import ID

    public = ID.from_base58(net.peer_id).extract_public_key().to_bytes()
    assert public == bytes(SigningKey(seed(1)).verify_key)


async def test_an_error_in_the_block_comes_out_unwrapped_after_a_clean_stop() -> None:
    with pytest.raises(KeyError, match="boom"):
        async with open_libp2p_network(identity_seed=seed(5), timeouts=FAST):
            raise KeyError("boom")


async def test_cancelling_the_block_stops_everything() -> None:
    with trio.move_on_after(5) as scope:
        async with open_libp2p_network(identity_seed=seed(5), timeouts=FAST) as net:
            assert net.listen_addrs()
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught


async def test_bootstrap_failure_is_fatal_only_when_required() -> None:
    async with open_libp2p_network(identity_seed=seed(6), bootstrap=[NOBODY], timeouts=FAST) as net:
        assert net.known_peers() == []
    with pytest.raises(PeerUnavailable):
        async with open_libp2p_network(
            identity_seed=seed(6), bootstrap=[NOBODY], timeouts=FAST, require_bootstrap=True
        ):
            pytest.fail("must not start")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"identity_seed": b"short"}, "32 bytes"),
        ({"identity_seed": b"\x01" * 32, "listen": ["/ip4/127.0.0.1/udp/1/quic-v1"]}, "tcp"),
        ({"identity_seed": b"\x01" * 32, "bootstrap": ["/ip4/127.0.0.1/tcp/1"]}, "p2p"),
        ({"identity_seed": b"\x01" * 32, "listen": ["/ip4/10.255.255.254/tcp/4000"]}, "listen"),
    ],
)
async def test_bad_configuration_is_a_config_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        async with open_libp2p_network(timeouts=FAST, **kwargs):  # type: ignore[arg-type]
            pytest.fail("must not start")


async def test_a_plaintext_only_dialer_is_refused() -> None:
    # notes, bug 2: a plaintext dialer got in and claimed someone else's PeerID.
    import multiaddr
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

    key_pair = create_new_key_pair(seed(40))
    intruder = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
    async with networks(1) as (net,), intruder.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        target = info_from_p2p_addr(multiaddr.Multiaddr(net.listen_addrs()[0]))
        with trio.fail_after(10), pytest.raises(Exception):  # noqa: B017 (any refusal will do)
            await intruder.connect(target)  # a hang would end in TooSlowError: a failure
        assert intruder.get_id() not in net._host.get_connected_peers()
