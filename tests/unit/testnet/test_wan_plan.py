"""The WAN emulation plan: round-trip table, addresses, and the ip/tc commands."""

from __future__ import annotations

import pytest

from mesh.errors import ConfigError
from mesh.testnet.wan import (
    BRIDGE,
    INTRA_REGION_RTT_MS,
    REGIONS,
    make_plan,
    rtt_ms,
    setup_commands,
    teardown_commands,
)

pytestmark = pytest.mark.unit


def test_rtt_is_symmetric_and_intra_region_is_small() -> None:
    for a in REGIONS:
        assert rtt_ms(a, a) == INTRA_REGION_RTT_MS
        for b in REGIONS:
            assert rtt_ms(a, b) == rtt_ms(b, a)
    assert rtt_ms("na", "me") == 190.0
    assert rtt_ms("sa", "ea") == 300.0


def test_unknown_region_is_refused() -> None:
    with pytest.raises(ConfigError, match="mars"):
        rtt_ms("na", "mars")
    with pytest.raises(ConfigError):
        make_plan(["na", "mars"])


def test_plan_gives_each_node_its_own_namespace_in_its_region_subnet() -> None:
    plan = make_plan(["na", "me", "na", "ea"])
    assert [s.ip for s in plan.nodes] == ["10.77.1.1", "10.77.2.1", "10.77.1.2", "10.77.4.1"]
    names = [s.netns for s in plan.sites]
    assert len(set(names)) == len(names)
    assert all(len(s.veth) + 1 <= 15 for s in plan.sites)  # IFNAMSIZ, with the "p" suffix
    assert set(plan.clients) == set(REGIONS)
    assert plan.clients["sa"].ip == "10.77.3.200"


def test_netem_delays_are_half_the_round_trip_per_destination_region() -> None:
    plan = make_plan(["ea"])
    commands = [" ".join(c) for c in setup_commands(plan)]
    node = plan.nodes[0].netns
    delays = [
        c for c in commands if c.startswith(f"ip netns exec {node} tc qdisc") and "netem" in c
    ]
    assert [c.rsplit(" ", 1)[1] for c in delays] == [f"{rtt_ms('ea', r) / 2:g}ms" for r in REGIONS]
    filters = [c for c in commands if c.startswith(f"ip netns exec {node} tc filter")]
    assert [c.split(" dst ")[1].split()[0] for c in filters] == [
        "10.77.1.0/24",
        "10.77.2.0/24",
        "10.77.3.0/24",
        "10.77.4.0/24",
    ]


def test_without_netem_no_tc_command_and_teardown_removes_everything() -> None:
    plan = make_plan(["na", "sa"])
    assert not any("tc" in c for c in setup_commands(plan, netem=False))
    removed = teardown_commands(plan)
    assert ["ip", "link", "del", BRIDGE] in removed
    assert {c[3] for c in removed if c[:3] == ["ip", "netns", "del"]} == {
        s.netns for s in plan.sites
    }
