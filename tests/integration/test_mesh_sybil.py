"""Issue 10, the Sybil row: 17 fresh PeerIDs announce tiny-mlp and point at a black hole.

On a real 3-node testnet, one process runs 17 libp2p peers, each with a fresh key,
that announce themselves as providers of tiny-mlp in the DHT with an address
of a TCP port that accepts connections and never answers. None has a capacity
record. What must hold while they do:

- honest tasks keep succeeding, first attempt, on real nodes only: from fresh
  client processes (``mesh run``) and from long-lived clients;
- a long-lived client that learns only from the DHT (exchange and gossip cut
  off) never chooses a Sybil, looks each one up at most once per
  ``RECORDLESS_RETRY_S`` after finding no record (``UNKNOWN_RETRY_S`` after a
  lookup that got no answer), and never waits on the DHT for a task while it
  holds a live record of a healthy worker;
- a client with a live bootstrap peer never asks the DHT at all.

The attack is checked to be live first: a DHT lookup from another process
returns the Sybils among the providers. Latencies before and during the attack
are printed (``-s``), never asserted: the machine is shared.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from meshproc import (
    ENV,
    ROW,
    LineReader,
    TestnetProcess,
    mesh_cli,
    run_json_script,
    running_testnet,
)

from mesh.client.discovery import RECORDLESS_RETRY_S, UNKNOWN_RETRY_S

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYBILS = 17
TASKS = 20

SYBIL_SCRIPT = """
import json, sys
import trio
from multiaddr import Multiaddr
from mesh.client.models import resolve_model
from mesh.core.identity import Identity
from mesh.errors import NetworkError
from mesh.net.libp2p_net import NetTimeouts, open_libp2p_network

bootstrap, blackhole, count = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
root = resolve_model("tiny-mlp")
announced = []
all_in = trio.Event()

async def sybil():
    ident = Identity.generate()
    async with open_libp2p_network(
        identity_seed=ident.seed, bootstrap=bootstrap, require_bootstrap=True,
        timeouts=NetTimeouts(dht=30.0),
    ) as net:
        # Its provider records name the black hole, not where it listens.
        fake = [Multiaddr(f"{blackhole}/p2p/{ident.peer_id}")]
        net._host.get_addrs = lambda: fake
        while True:  # a busy machine may time the walk out: an attacker tries again
            try:
                await net.provide(root, timeout=30)
                break
            except NetworkError:
                continue
        announced.append(ident.peer_id)
        if len(announced) == count:
            all_in.set()
        while True:  # and keeps announcing, as a determined attacker would
            await trio.sleep(5)
            try:
                await net.provide(root, timeout=30)
            except NetworkError:
                pass

async def main():
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(sybil)
        await all_in.wait()
        print(json.dumps({"sybils": announced}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)  # until told to stop
        nursery.cancel_scope.cancel()

trio.run(main)
"""

PROBE_SCRIPT = """
import json, sys
import trio
from mesh.client.async_client import AsyncClient

sybils, wanted = set(json.loads(sys.argv[2])), int(sys.argv[3])

async def main():
    async with AsyncClient.connect(bootstrap=sys.argv[1]) as client:
        with trio.move_on_after(120):
            while True:  # until the announcements have spread
                found = await client.providers("tiny-mlp", timeout=15)
                if len(sybils & set(found)) >= wanted:
                    break
                await trio.sleep(1)
    print(json.dumps({"providers": found}))

trio.run(main)
"""

# A long-lived client: runs N tasks per line read on stdin, prints what happened.
# Mode "dht-only": record exchange and gossip cut off, so the DHT is its only source.
CLIENT_SCRIPT = """
import dataclasses, json, sys
import trio
from mesh.client.async_client import AsyncClient
from mesh.client.jsonvalues import tensor_from_nested
from mesh.client.models import resolve_model
from mesh.core.receipts import verify_receipt

bootstrap, row, mode = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
root = resolve_model("tiny-mlp")

async def main():
    async with AsyncClient.connect(bootstrap=bootstrap) as client:
        discovery, net = client._discovery, client._network
        fetches = []  # (peer id, trio time) of every DHT record fetch
        dht_calls = [0]
        find, get = net.find_providers, net.get_record

        async def counting_find(*args, **kwargs):
            dht_calls[0] += 1
            return await find(*args, **kwargs)

        async def counting_get(key, **kwargs):
            dht_calls[0] += 1
            entry = [key.rsplit("/", 1)[1], trio.current_time(), "failed"]
            fetches.append(entry)
            value = await get(key, **kwargs)
            entry[2] = "absent" if value is None else "found"
            return value

        net.find_providers, net.get_record = counting_find, counting_get
        if mode == "dht-only":
            async def no_exchange(*args, **kwargs):
                return None
            discovery._exchange_round = no_exchange
            discovery.exchange.accept_gossip = lambda data: None
        serial = 0
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line.strip():
                break
            if line.startswith("-"):  # start from nothing: no record, no provider list
                for peer_id, _ in discovery.book.live_items(now_ms=client._now_ms()):
                    discovery.book.discard(peer_id)
                discovery._providers.clear()
            out = {"latency_ms": [], "workers": [], "attempts": [], "waited_on_dht": 0}
            fetches.clear()
            for _ in range(abs(int(line))):
                serial += 1
                x = {"x": tensor_from_nested([[v + 0.001 * serial for v in row]])}
                had_worker = any(net.is_healthy(c.peer.peer_id) for c in discovery.recorded(root))
                calls = dht_calls[0]
                started = trio.current_time()
                result = await client.run("tiny-mlp", x, timeout=30)
                out["latency_ms"].append((trio.current_time() - started) * 1000)
                verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
                if had_worker and dht_calls[0] != calls:
                    out["waited_on_dht"] += 1
                out["workers"].append(result.worker)
                out["attempts"].append(result.attempts)
            out["fetches"] = fetches
            out["stats"] = dataclasses.asdict(discovery.stats)
            print(json.dumps(out), flush=True)

trio.run(main)
"""


class BlackHole:
    """A TCP port that accepts connections and never answers (nor closes them)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            self._held.append(conn)

    def close(self) -> None:
        self._server.close()
        for conn in self._held:
            conn.close()


class Driven:
    """A client process that runs tasks when told to on stdin."""

    def __init__(self, bootstrap: Path, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT_SCRIPT, str(bootstrap), json.dumps(ROW), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=ENV,
        )  # fmt: skip
        self.out = LineReader(self.proc.stdout, f"client-{mode}")
        self.err = LineReader(self.proc.stderr, f"client-{mode}-err")

    def run(self, count: int, *, forget: bool = False, timeout: float = 180.0) -> dict[str, Any]:
        """Run ``count`` tasks; with ``forget``, from an empty record book and provider cache."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{'-' if forget else ''}{count}\n")
        self.proc.stdin.flush()
        try:
            line = self.out.wait_for(lambda s: s.startswith("{"), timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstderr: {self.err.all[-30:]}") from None
        doc: dict[str, Any] = json.loads(line)
        return doc

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fresh_runs(bootstrap: Path, tmp_path: Path, count: int) -> list[dict[str, Any]]:
    """``mesh run --json`` in ``count`` new processes, with each one's wall time."""
    (tmp_path / "x.json").write_text(json.dumps({"x": [ROW]}))
    runs = []
    for _ in range(count):
        started = time.monotonic()
        done = mesh_cli(
            "run", "tiny-mlp", "--bootstrap", str(bootstrap), "--input", f"@{tmp_path / 'x.json'}",
            "--json", timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        doc = json.loads(done.stdout.splitlines()[-1])
        doc["wall_s"] = time.monotonic() - started
        runs.append(doc)
    return runs


@pytest.fixture(scope="module")
def testnet3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestnetProcess]:
    with running_testnet(tmp_path_factory.mktemp("sybil-testnet"), nodes=3) as net:
        yield net


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def test_sybil_providers_without_records_cannot_stall_discovery(
    testnet3: TestnetProcess, tmp_path: Path
) -> None:
    nodes = {n.peer_id for n in testnet3.nodes}
    hole = BlackHole()
    clients = {mode: Driven(testnet3.bootstrap, mode) for mode in ("exchange", "dht-only")}
    sybil_proc: subprocess.Popen[str] | None = None
    try:
        baseline = {mode: c.run(TASKS) for mode, c in clients.items()}
        fresh_before = fresh_runs(testnet3.bootstrap, tmp_path, 3)

        bootstrap = json.dumps([n.addr for n in testnet3.nodes])
        sybil_proc = subprocess.Popen(
            [sys.executable, "-c", SYBIL_SCRIPT, bootstrap, f"/ip4/127.0.0.1/tcp/{hole.port}",
             str(SYBILS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=ENV,
        )  # fmt: skip
        sybil_out = LineReader(sybil_proc.stdout, "sybils")
        sybil_err = LineReader(sybil_proc.stderr, "sybils-err")
        try:
            line = sybil_out.wait_for(lambda s: s.startswith("{"), timeout=240)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstderr: {sybil_err.all[-30:]}") from None
        sybils = set(json.loads(line)["sybils"])
        assert len(sybils) == SYBILS

        # The attack is live: the DHT hands out Sybils as providers of tiny-mlp.
        probe = run_json_script(
            PROBE_SCRIPT, str(testnet3.bootstrap), json.dumps(sorted(sybils)), str(SYBILS // 2),
            timeout=180,
        )  # fmt: skip
        announced = set(probe["providers"])
        assert len(announced & sybils) >= SYBILS // 2, probe

        # The DHT-only client starts from nothing, as a new one would: the DHT
        # gives it 20 providers, most of them Sybils.
        during = {mode: c.run(TASKS, forget=mode == "dht-only") for mode, c in clients.items()}
        fresh_during = fresh_runs(testnet3.bootstrap, tmp_path, 3)

        for mode, doc in during.items():
            assert set(doc["workers"]) <= nodes, mode
            assert doc["attempts"] == [1] * TASKS, mode
            assert doc["waited_on_dht"] == 0, mode
        # The client with live bootstrap peers never needed the DHT.
        assert during["exchange"]["stats"]["dht_lookups"] == 0
        assert during["exchange"]["fetches"] == []
        # The DHT-only client looked each Sybil up at most once per back-off: the
        # long one after a lookup that found no record, the short one after a
        # lookup that did not finish (no answer is no proof).
        assert during["dht-only"]["fetches"], "the DHT-only client never used the DHT"
        last: dict[str, tuple[float, str]] = {}
        for peer_id, at, outcome in during["dht-only"]["fetches"]:
            if peer_id in sybils and peer_id in last:
                before, how = last[peer_id]
                wait = RECORDLESS_RETRY_S if how == "absent" else UNKNOWN_RETRY_S
                assert at - before >= wait, (peer_id, at, before, how)
            last[peer_id] = (at, outcome)
        for run in fresh_during:
            assert run["worker"] in nodes and run["attempts"] == 1

        print()
        for mode in clients:
            before, after = _p50(baseline[mode]["latency_ms"]), _p50(during[mode]["latency_ms"])
            print(
                f"long-lived client ({mode}): p50 {before:.1f} ms before, {after:.1f} ms "
                f"during the attack (x{after / before:.2f})"
            )
        before = _p50([r["wall_s"] for r in fresh_before])
        after = _p50([r["wall_s"] for r in fresh_during])
        print(
            f"fresh `mesh run` process: p50 {before:.2f} s before, {after:.2f} s during "
            f"(x{after / before:.2f}); Sybils among the DHT's providers: "
            f"{len(announced & sybils)} of {len(announced)}"
        )
    finally:
        for client in clients.values():
            client.close()
        if sybil_proc is not None and sybil_proc.poll() is None:
            sybil_proc.kill()
            sybil_proc.wait()
        hole.close()
