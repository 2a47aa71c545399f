"""Bad messages sent straight to ``/mesh/task/1.0.0`` of a real testnet node.

The test process joins the testnet with the libp2p adapter and sends
hand-built payloads: a forged signature, an expired task, the same signed task
twice, fields over their caps, a message of another kind, an unknown model, and
bytes that are not MessagePack at all. Each gets its typed ``ErrorReply`` (the
garbage gets its stream reset), and after each the same node still answers a
valid task signed by another client key with a receipt that verifies. At the
end a client in another process still gets that node to serve it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from meshproc import ROW, TestnetProcess, run_json_script

from mesh.client.jsonvalues import tensor_from_nested
from mesh.client.models import resolve_model
from mesh.core import canonical
from mesh.core.envelope import Signed, sign_message
from mesh.core.identity import Identity
from mesh.core.messages import ErrorReply, Result, Task, decode_response, encode_request
from mesh.core.receipts import verify_receipt
from mesh.core.values import Values, values_hash, values_to_wire
from mesh.errors import PeerUnavailable
from mesh.net.interface import TASK_PROTOCOL, PeerAddr
from mesh.net.libp2p_net import Libp2pNetwork, open_libp2p_network

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUEST_TIMEOUT_S = 15.0
INPUTS: Values = {"x": tensor_from_nested([ROW])}


def now_ms() -> int:
    return int(time.time() * 1000)


def make_task(
    identity: Identity,
    *,
    inputs: Values = INPUTS,
    input_hash: bytes | None = None,
    model_root: bytes | None = None,
    created_ms: int | None = None,
    window_ms: int = 60_000,
) -> Signed[Task]:
    created = now_ms() if created_ms is None else created_ms
    task = Task(
        client=identity.public_key,
        nonce=os.urandom(16),
        created_ms=created,
        expires_ms=created + window_ms,
        model_root=model_root or resolve_model("tiny-mlp"),
        input_hash=input_hash or values_hash(inputs),
        params={},
        verify="signature",
        target=b"",
    )
    return sign_message(identity, task)


def forged_signature() -> bytes:
    wire = make_task(Identity.generate()).to_wire()
    wire["sig"] = bytes([wire["sig"][0] ^ 0x01]) + wire["sig"][1:]
    return canonical.encode({"inputs": values_to_wire(INPUTS), "kind": "task", "task": wire})


def someone_elses_key() -> bytes:
    # A body claiming another client, under this signer's envelope key.
    signed = make_task(Identity.generate())
    wire = signed.to_wire()
    wire["key"] = Identity.generate().public_key
    return canonical.encode({"inputs": values_to_wire(INPUTS), "kind": "task", "task": wire})


def expired() -> bytes:
    task = make_task(Identity.generate(), created_ms=now_ms() - 120_000, window_ms=60_000)
    return encode_request(task, INPUTS)


def oversized_text() -> bytes:
    # One text over the 64 KiB string cap; the hash is computed by hand because
    # our own encoder refuses to build such values.
    texts = {"x": ["a" * (70 * 1024)]}
    task = make_task(Identity.generate(), input_hash=values_hash_unchecked(texts))
    return canonical.encode({"inputs": texts, "kind": "task", "task": task.to_wire()})


def too_many_texts() -> bytes:
    texts = {"x": ["t"] * 300}  # cap: 256 texts per task
    task = make_task(Identity.generate(), input_hash=values_hash_unchecked(texts))
    return canonical.encode({"inputs": texts, "kind": "task", "task": task.to_wire()})


def wrong_kind() -> bytes:
    return canonical.encode({"kind": "hello", "task": b"", "inputs": {}})


def unknown_model() -> bytes:
    return encode_request(make_task(Identity.generate(), model_root=os.urandom(32)), INPUTS)


def values_hash_unchecked(wire: dict[str, list[str]]) -> bytes:
    import hashlib

    return hashlib.sha256(canonical.encode(wire)).digest()


@asynccontextmanager
async def joined(testnet: TestnetProcess) -> AsyncIterator[Libp2pNetwork]:
    """A libp2p peer of our own, joined to the testnet through its bootstrap nodes."""
    async with open_libp2p_network(
        identity_seed=Identity.generate().seed,
        bootstrap=[n.addr for n in testnet.nodes],
        dht_server=False,
        require_bootstrap=True,
    ) as network:
        yield network


def peer_of(testnet: TestnetProcess, index: int) -> PeerAddr:
    node = testnet.nodes[index]
    return PeerAddr(node.peer_id, (node.addr.split("/p2p/")[0],))


async def ask(network: Libp2pNetwork, peer: PeerAddr, payload: bytes) -> Result | ErrorReply:
    answer = await network.request(peer, TASK_PROTOCOL, payload, timeout=REQUEST_TIMEOUT_S)
    return decode_response(answer)


async def assert_still_serves(network: Libp2pNetwork, peer: PeerAddr) -> None:
    """A valid task from a fresh client key gets a result whose receipt verifies."""
    task = make_task(Identity.generate())
    answer = await ask(network, peer, encode_request(task, INPUTS))
    assert isinstance(answer, Result), answer
    verify_receipt(answer.receipt, task=task, outputs=answer.outputs)


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (forged_signature, "bad-signature"),
        (someone_elses_key, "bad-signature"),
        (expired, "expired"),
        (oversized_text, "too-large"),
        (too_many_texts, "too-large"),
        (wrong_kind, "malformed"),
        (unknown_model, "unknown-model"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
async def test_bad_task_gets_its_typed_error_and_the_node_keeps_serving(
    shared_testnet: TestnetProcess, build: Callable[[], bytes], code: str
) -> None:
    peer = peer_of(shared_testnet, 0)
    with trio.fail_after(60):
        async with joined(shared_testnet) as network:
            answer = await ask(network, peer, build())
            assert isinstance(answer, ErrorReply), answer
            assert answer.code == code, answer.message
            await assert_still_serves(network, peer)


async def test_replayed_task_is_refused_the_second_time(shared_testnet: TestnetProcess) -> None:
    peer = peer_of(shared_testnet, 1)
    task = make_task(Identity.generate())
    request = encode_request(task, INPUTS)
    with trio.fail_after(60):
        async with joined(shared_testnet) as network:
            first = await ask(network, peer, request)
            assert isinstance(first, Result)
            verify_receipt(first.receipt, task=task, outputs=first.outputs)
            second = await ask(network, peer, request)
            assert isinstance(second, ErrorReply)
            assert second.code == "replayed"
            assert second.task_id == task.digest
            await assert_still_serves(network, peer)


async def test_garbage_bytes_close_the_stream_and_the_node_keeps_serving(
    shared_testnet: TestnetProcess,
) -> None:
    peer = peer_of(shared_testnet, 2)
    with trio.fail_after(60):
        async with joined(shared_testnet) as network:
            for garbage in (b"\xc1\xc1 not msgpack", os.urandom(4096) + b"\xc1"):
                with pytest.raises(PeerUnavailable):
                    await network.request(peer, TASK_PROTOCOL, garbage, timeout=REQUEST_TIMEOUT_S)
                await assert_still_serves(network, peer)


TARGETED_SCRIPT = """
import json, sys
import mesh
from mesh.client.jsonvalues import tensor_from_nested

bootstrap, row, targets = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
with mesh.Client(bootstrap=bootstrap) as client:
    x = {"x": tensor_from_nested([row])}
    workers = [client.run("tiny-mlp", x, target=peer, timeout=30).worker for peer in targets]
print(json.dumps({"workers": workers}))
"""


def test_nodes_hit_by_bad_messages_still_serve_a_client_process(
    shared_testnet: TestnetProcess,
) -> None:
    # Runs after the tests above (file order): every node got bad messages.
    targets = [n.peer_id for n in shared_testnet.nodes]
    args = (str(shared_testnet.bootstrap), json.dumps(ROW), *targets)
    doc = run_json_script(TARGETED_SCRIPT, *args)
    assert doc["workers"] == targets


async def test_frame_declared_over_the_cap_closes_the_stream_and_the_node_keeps_serving(
    shared_testnet: TestnetProcess,
) -> None:
    # Our own request() refuses to send anything over the caps, so this one is
    # written on a raw stream: a frame header declaring more than the frame cap.
    # The node must drop the stream on the header alone, without reading (or
    # buffering) the body it announces.
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID

    from mesh.core.framing import FLAG_FINAL, HEADER
    from mesh.core.limits import MAX_FRAME_BYTES

    peer = peer_of(shared_testnet, 0)
    with trio.fail_after(60):
        async with joined(shared_testnet) as network:
            await network.connect(peer, timeout=REQUEST_TIMEOUT_S)
            host = network._host  # the raw libp2p host: no public way to send a bad frame
            stream = await host.new_stream(ID.from_base58(peer.peer_id), [TProtocol(TASK_PROTOCOL)])
            await stream.write(HEADER.pack(FLAG_FINAL, MAX_FRAME_BYTES + 1) + b"\x00" * 1024)
            answer = b""
            with contextlib.suppress(Exception):  # a reset surfaces as a library error
                while chunk := await stream.read(65536):
                    answer += chunk
            assert answer == b""  # no reply at all: the stream was closed on us
            await assert_still_serves(network, peer)
