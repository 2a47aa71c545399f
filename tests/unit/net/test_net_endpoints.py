"""Advertised addresses: 0.0.0.0 expanded, TCP endpoints parsed, observed IPs normalised."""

from __future__ import annotations

import ipaddress

import pytest

from mesh.errors import ConfigError
from mesh.net.endpoints import expand_unspecified, interface_ips, observed_ip, tcp_endpoint

pytestmark = pytest.mark.unit

IPS = [ipaddress.ip_address(a) for a in ("192.0.2.5", "2001:db8::5", "127.0.0.1", "::1")]


def test_unspecified_addresses_become_one_per_interface_address() -> None:
    addrs = ["/ip4/0.0.0.0/tcp/4001/p2p/12D3Koo", "/ip6/::/tcp/4002", "/ip4/10.1.2.3/tcp/9"]
    assert expand_unspecified(addrs, ips=IPS) == [
        "/ip4/192.0.2.5/tcp/4001/p2p/12D3Koo",
        "/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo",
        "/ip6/2001:db8::5/tcp/4002",
        "/ip6/::1/tcp/4002",
        "/ip4/10.1.2.3/tcp/9",
    ]


def test_this_hosts_interfaces_include_loopback_last() -> None:
    ips = interface_ips()
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert not any(ip.is_unspecified or ip.is_link_local for ip in ips)
    assert ips[-1].is_loopback


def test_tcp_endpoints() -> None:
    assert tcp_endpoint("/ip4/127.0.0.1/tcp/4001") == ("127.0.0.1", 4001)
    assert tcp_endpoint("/ip6/::1/tcp/4001/p2p/12D3Koo") == ("::1", 4001)
    for bad in ("/dns4/example.org/tcp/1", "/ip4/1.2.3.4/udp/1", "/ip4/::1/tcp/1", "/ip4/x/tcp/1"):
        with pytest.raises(ConfigError):
            tcp_endpoint(bad)


def test_observed_ips_are_normalised() -> None:
    assert observed_ip("/ip6/::ffff:192.0.2.5/tcp/5555") == ipaddress.ip_address("192.0.2.5")
    assert observed_ip("") is None
