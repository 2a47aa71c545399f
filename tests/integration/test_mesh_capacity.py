"""Forged capacity records put into a real testnet's DHT are not accepted by its peers.

The test process joins the testnet as a libp2p peer whose own validator accepts
anything, and ``put_record``s, next to one valid control record:

- a record under a node's key whose signature does not check (bad signature);
- a record signed by another key, put under a node's key (someone else's key);
- a properly signed record that has expired.

Then it leaves, and an observer in another process looks the keys up with a
validator that would also accept anything: whatever it gets back is what the
nodes stored and served. The control record comes back (so puts did reach the
nodes), the forged ones never do (the nodes' own records, or nothing), and the
observer's ``peers()`` shows only the nodes' real records.
"""

from __future__ import annotations

import json
import time

import pytest
import trio
from meshproc import TestnetProcess, run_json_script

from mesh.core import canonical
from mesh.core.capacity import CAPACITY_NAMESPACE, capacity_key, open_capacity
from mesh.core.envelope import pae, sign_message
from mesh.core.identity import Identity, public_key_from_peer_id
from mesh.core.messages import CapacityRecord
from mesh.net.libp2p_net import open_libp2p_network

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PUT_TIMEOUT_S = 10.0
FORGED_REGION = "forged"

OBSERVER_SCRIPT = """
import json, sys
import trio
from mesh.client.async_client import AsyncClient
from mesh.core.identity import Identity
from mesh.core.capacity import CAPACITY_NAMESPACE
from mesh.net.libp2p_net import open_libp2p_network

bootstrap, keys = json.loads(sys.argv[1]), json.loads(sys.argv[2])

async def main():
    values = {}
    async with open_libp2p_network(
        identity_seed=Identity.generate().seed, bootstrap=bootstrap, dht_server=False,
        require_bootstrap=True,
    ) as network:
        # Accept anything: what comes back is whatever the nodes stored and served.
        network.set_record_validator(CAPACITY_NAMESPACE, lambda key, value: None)
        for key in keys:
            value = await network.get_record(key, timeout=10)
            values[key] = None if value is None else value.hex()
    async with AsyncClient.connect(bootstrap=bootstrap) as client:
        views = await client.peers(timeout=10)
    peers = [
        {"peer_id": v.peer_id, "region": v.record.region, "models": list(v.record.model_names)}
        for v in views
    ]
    print(json.dumps({"values": values, "peers": peers}))

trio.run(main)
"""


def record(
    signer: Identity, *, peer: bytes | None = None, created_ms: int, ttl_ms: int, region: str
) -> CapacityRecord:
    return CapacityRecord(
        peer=peer or signer.public_key,
        addrs=("/ip4/127.0.0.1/tcp/9",),
        models=(b"\x07" * 32,),
        model_names=("evil-model",),
        device="cpu",
        memory_free_mb=1 << 20,
        queue_depth=0,
        queue_capacity=1000,
        throughput_milli=10**9,  # irresistibly fast, if anyone believed it
        price_micro=0,
        region=region,
        created_ms=created_ms,
        expires_ms=created_ms + ttl_ms,
    )


def bad_signature(victim: str, forger: Identity, now_ms: int) -> bytes:
    """A record naming ``victim`` with the victim's key in its envelope, signed by ``forger``."""
    victim_key = public_key_from_peer_id(victim)
    body = record(forger, peer=victim_key, created_ms=now_ms, ttl_ms=60_000, region=FORGED_REGION)
    body_bytes = canonical.encode(body.to_wire())
    sig = forger.sign(pae(CapacityRecord.TYPE, body_bytes))
    envelope = {"body": body_bytes, "key": victim_key, "sig": sig, "type": CapacityRecord.TYPE}
    return canonical.encode(envelope)


async def test_forged_capacity_records_are_not_accepted_by_peers(
    shared_testnet: TestnetProcess,
) -> None:
    victim_x, victim_y = shared_testnet.nodes[0].peer_id, shared_testnet.nodes[1].peer_id
    control, forger, stale = Identity.generate(), Identity.generate(), Identity.generate()
    now_ms = int(time.time() * 1000)
    control_value = sign_message(
        control, record(control, created_ms=now_ms, ttl_ms=60_000, region="control")
    ).envelope
    puts = {
        capacity_key(control.peer_id): control_value,
        # Bad signature under a real node's key.
        capacity_key(victim_x): bad_signature(victim_x, forger, now_ms),
        # A valid record of the forger, under another real node's key.
        capacity_key(victim_y): sign_message(
            forger, record(forger, created_ms=now_ms, ttl_ms=60_000, region=FORGED_REGION)
        ).envelope,
        # Properly signed by its own peer, but expired ten minutes ago.
        capacity_key(stale.peer_id): sign_message(
            stale,
            record(stale, created_ms=now_ms - 1_200_000, ttl_ms=600_000, region=FORGED_REGION),
        ).envelope,
    }
    with trio.fail_after(90):
        async with open_libp2p_network(
            identity_seed=Identity.generate().seed,
            bootstrap=[n.addr for n in shared_testnet.nodes],
            dht_server=False,  # we never serve the forged copies we hold ourselves
            require_bootstrap=True,
        ) as network:
            network.set_record_validator(CAPACITY_NAMESPACE, lambda key, value: None)
            for key, value in puts.items():
                await network.put_record(key, value, timeout=PUT_TIMEOUT_S)

    bootstrap = json.dumps([n.addr for n in shared_testnet.nodes])
    doc = run_json_script(OBSERVER_SCRIPT, bootstrap, json.dumps(list(puts)))
    values = doc["values"]
    assert isinstance(values, dict)

    # The control record reached the nodes and is served back: puts do land.
    assert values[capacity_key(control.peer_id)] == control_value.hex()
    # The expired record was stored by nobody.
    assert values[capacity_key(stale.peer_id)] is None
    # Under the victims' keys, only their own valid records are served.
    for victim in (victim_x, victim_y):
        served = values[capacity_key(victim)]
        assert served is not None and served != puts[capacity_key(victim)].hex()
        real = open_capacity(bytes.fromhex(served), peer_id=victim, now_ms=int(time.time() * 1000))
        assert real.message.region != FORGED_REGION
        assert "tiny-mlp" in real.message.model_names

    peers = doc["peers"]
    assert isinstance(peers, list)
    listed = {p["peer_id"]: p for p in peers}
    assert {n.peer_id for n in shared_testnet.nodes} <= set(listed)
    assert stale.peer_id not in listed
    for row in peers:
        assert row["region"] != FORGED_REGION
        assert "evil-model" not in row["models"]
