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
