"""Token streaming over the memory network on a fake clock: node, client, continuations.

The runner is a generation double (:class:`meshfakes.TokenRunner`) that can hold
a task after some tokens until the test lets it go: "the worker has not finished
yet" is then a state the test controls, never a matter of timing.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import trio
from meshfakes import (
    ROOT_A,
    FakeRunner,
    TokenRunner,
    fake_text,
    fake_tokens,
    identity,
    open_client,
    signed_task,
    start_node,
    wall,
)

from mesh.client.async_client import AsyncClient
from mesh.client.streaming import StreamChunk, TokenStream
from mesh.core.messages import Result, decode_partial, decode_response, encode_request
from mesh.core.partials import runtime_class, token_list
from mesh.core.receipts import verify_receipt
from mesh.core.tensors import Tensor
from mesh.errors import (
    Closed,
    ConfigError,
    InvalidInput,
    OtherRuntimeClass,
    StreamDiverged,
    StreamInterrupted,
    VerificationError,
)
from mesh.net.interface import TASK_PROTOCOL, PeerAddr
from mesh.node.streaming import PARTIAL_INTERVAL_S
from mesh.testing import MemoryHub

pytestmark = pytest.mark.component

CLIENT = 40
PROMPT = {"prompt": ["Hello"]}
PARAMS = {"seed": 5, "max_tokens": 8}
EXPECTED = fake_tokens(PROMPT, PARAMS)


async def _read(stream: TokenStream, tokens: int) -> list[StreamChunk]:
    """Chunks until at least ``tokens`` token ids came."""
    chunks: list[StreamChunk] = []
    while sum(len(c.token_ids) for c in chunks) < tokens:
        chunks.append(await stream.__anext__())
    return chunks


def _ids(chunks: list[StreamChunk]) -> list[int]:
    return [i for c in chunks for i in c.token_ids]


def _result_ids(stream: TokenStream) -> list[int]:
    ids = stream.result.outputs["token_ids"]
    assert isinstance(ids, Tensor)
    return token_list(ids)


async def test_tokens_arrive_before_the_worker_finishes_then_a_verified_result(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = TokenRunner(hold_after=3)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, runner, tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        async with client.stream(ROOT_A, PROMPT, timeout=30, **PARAMS) as stream:
            first = await _read(stream, 3)
            # The worker is held after 3 tokens: it has not finished, and the
            # stream already gave those 3.
            assert runner.held.is_set() and runner.ran == 0 and runner.emitted == 3
            assert _ids(first) == EXPECTED[:3]
            assert {c.worker for c in first} == {node.peer_id}
            runner.hold.set()
            rest = [chunk async for chunk in stream]
        chunks = first + rest
        assert _ids(chunks) == EXPECTED == _result_ids(stream)
        assert "".join(c.text for c in chunks) == fake_text(EXPECTED)
        result = stream.result
        verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
        assert result.worker == node.peer_id and result.attempts == 1
        assert result.task.digest == stream.task_id
        assert result.task.message.params == PARAMS
        nursery.cancel_scope.cancel()


async def test_a_plain_request_gets_no_partials_and_run_still_works(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # The memory network refuses a partial answer to a requester that asked for
    # none (as the libp2p adapter does): run() succeeding shows none was sent.
    runner = TokenRunner()
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, runner, tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        result = await client.run(ROOT_A, PROMPT, timeout=30, **PARAMS)
        ids = result.outputs["token_ids"]
        assert isinstance(ids, Tensor) and token_list(ids) == EXPECTED
        nursery.cancel_scope.cancel()


async def test_a_slow_reader_gets_coalesced_partials_and_never_holds_up_the_worker(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = TokenRunner(step_s=0.01)
    hub = MemoryHub()
    params = {"seed": 1, "max_tokens": 40}
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, runner, tmp_path)
        ident = identity(CLIENT)
        task = signed_task(ident, PROMPT, now_ms=wall()(), params=params)
        reader_may_go = trio.Event()
        partials: list[bytes] = []

        async def slow_reader(data: bytes) -> None:
            partials.append(data)
            if len(partials) == 1:
                await reader_may_go.wait()  # the reader stalls after the first partial

        async def release_when_done() -> None:
            await runner.generated.wait()
            reader_may_go.set()

        async with hub.join(ident.peer_id) as net:
            nursery.start_soon(release_when_done)
            answer = await net.request(
                PeerAddr(node.peer_id),
                TASK_PROTOCOL,
                encode_request(task, PROMPT, stream=True),
                timeout=30,
                on_partial=slow_reader,
            )
        # Every token was generated while the reader was stalled on the first partial.
        assert reader_may_go.is_set()
        decoded = [decode_partial(p) for p in partials]
        assert [p.seq for p in decoded] == list(range(len(decoded)))
        streamed = [i for p in decoded for i in token_list(p.outputs["token_ids"])]  # type: ignore[arg-type]
        assert streamed == fake_tokens(PROMPT, params)
        # 40 tokens in a handful of partials: those made during the stall coalesced.
        assert len(decoded) <= 4
        assert decoded[0].runtime == runtime_class(runner.runtime_class(ROOT_A))
        assert all(p.runtime == {} for p in decoded[1:])
        result = decode_response(answer)
        assert isinstance(result, Result)
        assert token_list(result.outputs["token_ids"]) == streamed  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()


async def test_closing_a_stream_stops_the_work_and_no_receipt_is_issued(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Tokens slower than the node's partial pace: each goes out alone, so the first
    # one after the close finds the requester gone while the task still runs.
    runner = TokenRunner(hold_after=2, step_s=0.05)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, runner, tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        stream = client.stream(ROOT_A, PROMPT, timeout=30, **PARAMS)
        await _read(stream, 2)
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        runner.hold.set()  # its next token finds the requester gone
        await runner.stopped.wait()
        assert runner.ran == 0 and runner.emitted < PARAMS["max_tokens"]
        assert "ok" not in node._handler.answered  # no receipt, no result
        with pytest.raises(Exception, match="no result"):
            _ = stream.result
        nursery.cancel_scope.cancel()


async def test_a_worker_killed_mid_stream_is_continued_elsewhere_without_loss_or_duplicates(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    first_runner = TokenRunner(hold_after=3)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        first = await start_node(nursery, hub, 1, first_runner, tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        stream = client.stream(ROOT_A, PROMPT, timeout=30, **PARAMS)
        given = await _read(stream, 3)
        assert {c.worker for c in given} == {first.peer_id}
        # A second worker joins; then the first dies holding the task.
        second_runner = TokenRunner()
        second = await start_node(nursery, hub, 2, second_runner, tmp_path)
        hub.kill(first.peer_id)
        rest = [chunk async for chunk in stream]
        chunks = given + rest
        assert _ids(chunks) == EXPECTED == _result_ids(stream)
        assert "".join(c.text for c in chunks) == fake_text(EXPECTED)
        assert {c.worker for c in rest} == {second.peer_id}
        result = stream.result
        assert result.worker == second.peer_id and result.attempts == 2
        verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
        # The continuation re-ran the same signed task (same seed) from the start.
        assert second_runner.emitted == PARAMS["max_tokens"]
        nursery.cancel_scope.cancel()


async def test_a_continuation_that_differs_from_what_was_given_fails_the_stream(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # The first worker streams other tokens than an honest run gives (a liar); it
    # dies after two; the honest continuation cannot reproduce them.
    liar = TokenRunner(hold_after=2, lie="partials")
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        first = await start_node(nursery, hub, 1, liar, tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        stream = client.stream(ROOT_A, PROMPT, timeout=30, **PARAMS)
        await _read(stream, 2)
        honest = TokenRunner()
        await start_node(nursery, hub, 2, honest, tmp_path)
        hub.kill(first.peer_id)
        with pytest.raises(StreamDiverged):
            async for _ in stream:
                pass
        # The honest worker's task stopped when the client gave up on it.
        await honest.stopped.wait()
        nursery.cancel_scope.cancel()


async def test_no_worker_of_the_same_runtime_class_fails_with_stream_interrupted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        first = await start_node(nursery, hub, 1, TokenRunner(hold_after=3), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        stream = client.stream(ROOT_A, PROMPT, timeout=30, **PARAMS)
        await _read(stream, 3)
        other = TokenRunner(runtime_extra={"dtype": "bfloat16"})
        await start_node(nursery, hub, 2, other, tmp_path)
        hub.kill(first.peer_id)
        with pytest.raises(StreamInterrupted) as caught:
            async for _ in stream:
                pass
        assert caught.value.yielded == 3
        assert isinstance(caught.value.__cause__, OtherRuntimeClass)
        nursery.cancel_scope.cancel()


async def test_partials_that_are_not_the_signed_result_are_a_lie(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        liar = await start_node(nursery, hub, 1, TokenRunner(lie="partials"), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        stream = client.stream(ROOT_A, PROMPT, timeout=30, **PARAMS)
        with pytest.raises(VerificationError, match="streamed token ids"):
            async for _ in stream:
                pass
        assert client._reputation.excluded(liar.peer_id)
        nursery.cancel_scope.cancel()


async def test_text_held_back_by_the_worker_comes_last_without_tokens(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = TokenRunner(text_lag=True, hold_after=1)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, runner, tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        stream = client.stream(ROOT_A, PROMPT, timeout=30, **PARAMS)
        (first,) = await _read(stream, 1)
        assert first.token_ids == (EXPECTED[0],) and first.text == ""  # its text held back
        runner.hold.set()
        chunks = [first] + [chunk async for chunk in stream]
        assert "".join(c.text for c in chunks) == fake_text(EXPECTED)
        assert _ids(chunks) == EXPECTED
        nursery.cancel_scope.cancel()


async def test_streaming_a_model_that_emits_no_tokens_is_refused(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, FakeRunner(), tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        stream = client.stream(ROOT_A, PROMPT, timeout=30)
        with pytest.raises(InvalidInput, match="no tokens"):
            await stream.__anext__()
        nursery.cancel_scope.cancel()


async def test_a_stream_outlived_by_its_client_ends_with_closed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    runner = TokenRunner(hold_after=1)
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, runner, tmp_path)
        scope = trio.CancelScope()

        async def client_life(task_status: trio.TaskStatus[AsyncClient]) -> None:
            with scope:
                await open_client(hub, CLIENT, task_status=task_status)

        client: AsyncClient = await nursery.start(client_life)
        stream = client.stream(ROOT_A, PROMPT, timeout=30, **PARAMS)
        await _read(stream, 1)
        scope.cancel()  # the client closes under the stream
        with pytest.raises(Closed):
            async for _ in stream:
                pass
        nursery.cancel_scope.cancel()


async def test_partials_of_a_fast_generation_are_paced_and_the_first_and_last_never_wait(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = TokenRunner(step_s=0.001)  # a token per virtual millisecond
    hub = MemoryHub()
    params = {"seed": 2, "max_tokens": 50}
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, hub, 1, runner, tmp_path)
        ident = identity(CLIENT)
        task = signed_task(ident, PROMPT, now_ms=wall()(), params=params)
        arrivals: list[tuple[float, int]] = []

        async def on_partial(data: bytes) -> None:
            ids = decode_partial(data).outputs["token_ids"]
            assert isinstance(ids, Tensor)
            arrivals.append((trio.current_time(), ids.shape[0]))

        async with hub.join(ident.peer_id) as net:
            started = trio.current_time()
            await net.request(
                PeerAddr(node.peer_id),
                TASK_PROTOCOL,
                encode_request(task, PROMPT, stream=True),
                timeout=30,
                on_partial=on_partial,
            )
        times = [t - started for t, _ in arrivals]
        assert sum(n for _, n in arrivals) == 50
        assert times[0] == pytest.approx(0.001)  # the first token, at once
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= PARTIAL_INTERVAL_S - 1e-9 for gap in gaps[:-1])
        assert times[-1] == pytest.approx(0.050)  # the last, as soon as the task ended
        assert len(arrivals) < 10  # 50 tokens in a few partials
        nursery.cancel_scope.cancel()


async def test_redundant_verification_cannot_stream(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hub = MemoryHub()
    runner = TokenRunner()
    async with trio.open_nursery() as nursery:
        await start_node(nursery, hub, 1, runner, tmp_path)
        client: AsyncClient = await nursery.start(open_client, hub, CLIENT)
        with pytest.raises(ConfigError, match="redundant"):
            client.stream(ROOT_A, PROMPT, verify="redundant", **PARAMS)
        assert runner.ran == 0 and not runner.started.is_set()  # nothing was sent
        nursery.cancel_scope.cancel()
