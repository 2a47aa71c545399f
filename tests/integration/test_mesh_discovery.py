"""The record exchange between real processes: a client chooses a worker in one round trip,
and what a lying peer hands out is dropped.

- A client process whose DHT calls all fail learns of the workers only by the
  record exchange with its bootstrap peers, and gets a verified result.
- A peer process answers ``/mesh/records/1.0.0`` with a forged record of a real
  node (its signature broken, pointing at the liar), the same record's body
  signed by the liar, an expired record and a task envelope dressed as a record.
  A client bootstrapping through it and a real node drops all four, counts the
  liar against in its health list, and gets its result from a real node.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from meshproc import ENV, ROW, LineReader, TestnetProcess, run_json_script

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXCHANGE_ONLY_SCRIPT = """
import json, sys
import trio
from mesh.client.async_client import AsyncClient
from mesh.client.jsonvalues import tensor_from_nested
from mesh.errors import NetworkError

async def no_dht(*args, **kwargs):
    raise NetworkError("the DHT is off for this client")

async def main():
    async with AsyncClient.connect(bootstrap=sys.argv[1]) as client:
        net = client._network
        net.find_providers = net.get_record = no_dht
        x = {"x": tensor_from_nested([json.loads(sys.argv[2])])}
        result = await client.run("tiny-mlp", x, timeout=30)
        result.verify()
        stats = client._discovery.stats
        print(json.dumps({
            "worker": result.worker, "attempts": result.attempts,
            "exchange_rounds": stats.exchange_rounds, "dht_lookups": stats.dht_lookups,
            "record_fetches": stats.record_fetches,
        }))

trio.run(main)
"""

LIAR_SCRIPT = """
import json, sys, time
import trio
from mesh.core import canonical
from mesh.core.capacity import CAPACITY_NAMESPACE, capacity_validator
from mesh.core.envelope import sign_message
from mesh.core.exchange import RecordsAnswer
from mesh.core.identity import Identity
from mesh.core.messages import CapacityRecord, Task
from mesh.core.record_book import RecordBook
from mesh.net.exchange import RecordExchange
from mesh.net.interface import RECORDS_PROTOCOL, PeerAddr
from mesh.net.libp2p_net import open_libp2p_network

real_node = sys.argv[1]  # a real node's multiaddr, to take a genuine record from

async def main():
    me = Identity.generate()
    async with open_libp2p_network(identity_seed=me.seed, bootstrap=[real_node]) as net:
        now = lambda: int(time.time() * 1000)
        # A genuine record of the real node, learnt by exchange like anyone would.
        book = RecordBook()
        node_id = real_node.rsplit("/", 1)[1]
        await RecordExchange(net, book, wall_clock=now).ask(PeerAddr(node_id), timeout=10)
        victim = book.get(node_id, now_ms=now())
        wire = canonical.decode(victim.envelope)
        body = canonical.decode(wire["body"])
        body["addrs"] = [a + "/p2p/" + me.peer_id for a in net.listen_addrs()][:1]
        forged = canonical.encode({**wire, "body": canonical.encode(body)})
        impostor = canonical.encode({**wire, "key": me.public_key, "sig": me.sign(wire["body"])})
        old = now() - 3_600_000
        expired = sign_message(me, CapacityRecord(
            peer=me.public_key, addrs=(), models=victim.message.models,
            model_names=victim.message.model_names, device="cpu", memory_free_mb=0,
            queue_depth=0, queue_capacity=1000, throughput_milli=10**9, price_micro=0,
            region="liar", created_ms=old, expires_ms=old + 60_000,
        )).envelope
        foreign = sign_message(me, Task(
            client=me.public_key, nonce=bytes(16), created_ms=now(), expires_ms=now() + 60_000,
            model_root=victim.message.models[0], input_hash=bytes(32), params={},
            verify="signature", target=b"",
        )).envelope
        answer = RecordsAnswer(records=(forged, impostor, expired, foreign)).encode()

        async def handler(inbound):
            return answer

        net.set_request_handler(RECORDS_PROTOCOL, handler)
        print(json.dumps({"addr": net.listen_addrs()[0], "victim": node_id}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)

trio.run(main)
"""

VICTIM_CLIENT_SCRIPT = """
import json, sys
import trio
from mesh.client.async_client import AsyncClient
from mesh.client.jsonvalues import tensor_from_nested
from mesh.net.interface import PeerAddr

liar_addr, node_addr, row = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
liar = liar_addr.rsplit("/", 1)[1]

async def main():
    async with AsyncClient.connect(bootstrap=[liar_addr]) as client:
        got = await client._discovery.exchange.ask(PeerAddr(liar), timeout=10)
        held = client._discovery.record(sys.argv[4])
        healthy_after = client._network.is_healthy(liar)
    async with AsyncClient.connect(bootstrap=[liar_addr, node_addr]) as client:
        result = await client.run("tiny-mlp", {"x": tensor_from_nested([row])}, timeout=30)
        result.verify()
        victim_record = client._discovery.record(sys.argv[4])
    print(json.dumps({
        "accepted": len(got.records), "rejected": got.rejected,
        "error": None if got.error is None else str(got.error),
        "victim_held": held is not None, "liar_healthy": healthy_after,
        "worker": result.worker,
        "victim_addrs": [] if victim_record is None else list(victim_record.addrs),
    }))

trio.run(main)
"""


def test_a_client_that_learns_workers_only_by_exchange_gets_a_verified_result(
    shared_testnet: TestnetProcess,
) -> None:
    doc = run_json_script(EXCHANGE_ONLY_SCRIPT, str(shared_testnet.bootstrap), json.dumps(ROW))
    assert doc["worker"] in {n.peer_id for n in shared_testnet.nodes}
    assert doc["attempts"] == 1
    assert doc["exchange_rounds"] >= 1
    assert doc["dht_lookups"] == 0 and doc["record_fetches"] == 0


def test_forged_expired_and_foreign_records_from_a_peer_are_dropped(
    shared_testnet: TestnetProcess,
) -> None:
    node = shared_testnet.nodes[0]
    liar = subprocess.Popen(
        [sys.executable, "-c", LIAR_SCRIPT, node.addr],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    out, err = LineReader(liar.stdout, "liar"), LineReader(liar.stderr, "liar-err")
    try:
        try:
            line = out.wait_for(lambda s: s.startswith("{"), timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstderr: {err.all[-20:]}") from None
        started = json.loads(line)
        doc = run_json_script(
            VICTIM_CLIENT_SCRIPT, started["addr"], node.addr, json.dumps(ROW), started["victim"]
        )
        assert doc["accepted"] == 0 and doc["rejected"] == 4
        assert doc["error"] is not None  # forgeries: counted against the liar
        assert not doc["victim_held"]
        assert not doc["liar_healthy"]
        assert doc["worker"] in {n.peer_id for n in shared_testnet.nodes}
        # The victim's record the second client holds is its own, not the liar's edit.
        assert all(started["addr"].split("/p2p/")[0] not in a for a in doc["victim_addrs"])
    finally:
        if liar.poll() is None:
            assert liar.stdin is not None
            liar.stdin.close()
            try:
                liar.wait(timeout=20)
            except subprocess.TimeoutExpired:
                liar.kill()
                liar.wait()
