"""Continuous batching of generation lanes, on trio (autojump clock) with real worker threads.

Order is observed through the token hook (``on_tokens``) and recorded step
sizes, never through timing: every assertion holds however slow the machine.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest
import torch
import trio
import trio.testing

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InternalError, InvalidInput, MeshError
from mesh.runtime.convert import from_torch, to_torch
from mesh.runtime.executor import Execution, Executor
from mesh.runtime.generate import Decoding, Generator
from mesh.runtime.output import ModelOutput
from mesh.runtime.registry import LoadedModel, load_model
from mesh.runtime.zoo import Zoo

pytestmark = pytest.mark.component

Task = tuple[Values, dict[str, int]]
SAMPLED = {"temperature_milli": 900, "top_k": 40, "top_p_milli": 950}

_CACHE: dict[str, LoadedModel] = {}


def loaded(name: str) -> LoadedModel:
    if name not in _CACHE:
        _CACHE[name] = load_model(Zoo.builtin().manifest(name), device="cpu")
    return _CACHE[name]


def task(prompt: str, max_tokens: int, seed: int | None = None) -> Task:
    params = {"max_tokens": max_tokens} if seed is None else {**SAMPLED, "seed": seed}
    params["max_tokens"] = max_tokens
    return {"prompt": [prompt]}, params


def ids(result: Execution) -> list[int]:
    value = result.outputs["token_ids"]
    assert isinstance(value, Tensor)
    return [int(i) for i in to_torch(value).tolist()]


def alone(t: Task) -> tuple[Values, bytes]:
    (out,) = loaded("tiny-gpt").run_batch([t])
    return out.outputs, out.commitment


class Recording:
    """A tiny-gpt whose generator records each step's size and may fail on cue."""

    def __init__(self, *, fail_step: Callable[[Sequence[Decoding]], bool] | None = None) -> None:
        real = loaded("tiny-gpt").generator()
        self.sizes: list[int] = []
        gen: Generator = copy.copy(real)

        def step(decodings: Sequence[Decoding]) -> None:
            self.sizes.append(len(decodings))
            if fail_step is not None and fail_step(decodings):
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            real.step(decodings)

        gen.step = step  # type: ignore[method-assign]
        self.model = replace(loaded("tiny-gpt"), handler=gen)


class Log:
    """Token events of named tasks, in the order the hooks saw them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.tokens: dict[str, list[int]] = {}

    def hook(self, name: str, then: Callable[[int], None] | None = None) -> Any:
        def on_tokens(new: list[int]) -> None:
            got = self.tokens.setdefault(name, [])
            got.extend(new)
            self.events.append((name, len(got)))
            if then is not None:
                then(len(got))

        return on_tokens

    def first(self, name: str) -> int:
        return next(i for i, (n, _) in enumerate(self.events) if n == name)

    def last(self, name: str) -> int:
        return max(i for i, (n, _) in enumerate(self.events) if n == name)


class HookFailed(Exception):
    """What a test's token hook raises."""


class Harness:
    """An executor on one model, and the named tasks run through it."""

    def __init__(self, model: LoadedModel, **options: Any) -> None:
        self.model = model
        self.executor = Executor([model], **options)
        self.log = Log()
        self.results: dict[str, Execution] = {}
        self.errors: dict[str, Exception] = {}

    async def run(self, name: str, t: Task, then: Callable[[int], None] | None = None) -> None:
        hook = self.log.hook(name, then)

        def on_start() -> None:
            self.log.events.append((f"{name} starts", 0))

        try:
            self.results[name] = await self.executor.run(
                self.model.model_root, *t, on_start=on_start, on_tokens=hook
            )
        except (MeshError, HookFailed) as exc:
            self.errors[name] = exc

    def same_as_alone(self, name: str, t: Task) -> bool:
        result = self.results[name]
        return (result.outputs, result.commitment) == alone(t)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_task_arriving_mid_generation_joins_and_finishes_first(
    autojump_clock: Any,
) -> None:
    h = Harness(loaded("tiny-gpt"), max_batch=4)
    long, short = task("long one", 100), task("short", 5, seed=3)
    async with h.executor.running(), trio.open_nursery() as nursery:

        def after(count: int) -> None:
            if count == 3:  # the long generation is under way: submit the short one
                nursery.start_soon(h.run, "short", short)

        nursery.start_soon(h.run, "long", long, after)
    log = h.log
    # The short task started and ended while the long one was still decoding.
    assert log.first("short") < log.last("short") < log.last("long")
    # It started when it joined: right before the step that gave both a token.
    assert log.first("long starts") == 0
    joined = log.first("short starts")
    assert log.events[joined + 1 : joined + 3] == [
        ("long", log.events[joined + 1][1]),
        ("short", 1),
    ]
    assert 3 <= log.events[log.first("short") - 1][1] < 10  # it joined a few steps in
    assert len(log.tokens["long"]) == 100 and len(log.tokens["short"]) == 5
    for name, t in (("long", long), ("short", short)):
        assert h.same_as_alone(name, t)
        assert log.tokens[name] == ids(h.results[name])  # the hook saw every token, in order
        assert h.results[name].batch_size == h.results[name].runtime["batch_size"] == 2


async def test_the_static_switch_makes_a_late_task_wait_for_the_whole_batch(
    autojump_clock: Any,
) -> None:
    model = loaded("tiny-gpt")
    real = model.generator()
    gen = copy.copy(real)
    started, release = threading.Event(), threading.Event()

    def run_batch(items: list[Task]) -> list[ModelOutput]:
        started.set()
        release.wait(timeout=60)
        return real.run_batch(items)

    gen.run_batch = run_batch  # type: ignore[method-assign]
    h = Harness(replace(model, handler=gen), max_batch=4, continuous=False)
    long, short = task("long one", 100), task("short", 5, seed=3)
    async with h.executor.running(), trio.open_nursery() as nursery:
        nursery.start_soon(h.run, "long", long)
        await trio.to_thread.run_sync(started.wait)
        started.clear()
        nursery.start_soon(h.run, "short", short)  # arrives while the long batch runs
        await trio.testing.wait_all_tasks_blocked()
        assert h.executor.queue_depth() == 2
        release.set()
    # It waited for the whole batch, then ran alone; each hook fired once, with all tokens.
    assert h.log.events == [("long starts", 0), ("long", 100), ("short starts", 0), ("short", 5)]
    assert h.results["long"].batch_size == h.results["short"].batch_size == 1
    assert h.same_as_alone("long", long) and h.same_as_alone("short", short)


async def test_a_queued_task_starts_when_it_takes_a_slot(autojump_clock: Any) -> None:
    h = Harness(loaded("tiny-gpt"), max_batch=1)
    async with h.executor.running(), trio.open_nursery() as nursery:
        nursery.start_soon(h.run, "A", task("a", 6))
        nursery.start_soon(h.run, "B", task("b", 4))
    first, second = sorted("AB", key=h.log.first)
    assert h.log.events == [
        (f"{first} starts", 0),
        *[(first, n) for n in range(1, len(h.log.tokens[first]) + 1)],
        (f"{second} starts", 0),
        *[(second, n) for n in range(1, len(h.log.tokens[second]) + 1)],
    ]


async def test_a_raising_start_hook_stops_its_own_task_only(autojump_clock: Any) -> None:
    model = loaded("tiny-gpt")
    executor = Executor([model], max_batch=4)
    results: dict[str, Execution] = {}
    errors: list[Exception] = []

    def refuse() -> None:
        raise HookFailed("the task table refused the move")

    async def doomed() -> None:
        try:
            await executor.run(model.model_root, *task("doomed", 5), on_start=refuse)
        except HookFailed as exc:
            errors.append(exc)

    async def fine() -> None:
        results["fine"] = await executor.run(model.model_root, *task("fine", 5))

    async with executor.running(), trio.open_nursery() as nursery:
        nursery.start_soon(doomed)
        nursery.start_soon(fine)
    assert len(errors) == 1
    assert (results["fine"].outputs, results["fine"].commitment) == alone(task("fine", 5))
    assert results["fine"].batch_size == 1  # the doomed one never ran a step


async def test_run_keeps_its_positional_form(autojump_clock: Any) -> None:
    """The node calls ``run(model_root, inputs, params)``; that form is unchanged."""
    model = loaded("tiny-gpt")
    executor = Executor([model])
    t = task("plain call", 7)
    async with executor.running():
        result = await executor.run(model.model_root, t[0], t[1])
    assert (result.outputs, result.commitment) == alone(t)
    assert result.batch_size == 1 and result.compute_ms > 0


async def test_finished_tasks_leave_at_once_and_max_batch_holds(autojump_clock: Any) -> None:
    recording = Recording()
    h = Harness(recording.model, max_batch=2)
    shorts = {"B": task("b", 4), "C": task("c", 4, seed=1), "D": task("d", 4)}
    async with h.executor.running(), trio.open_nursery() as nursery:

        def after(count: int) -> None:
            if count == 1:  # three short tasks for the one free slot
                for name, t in shorts.items():
                    nursery.start_soon(h.run, name, t)

        nursery.start_soon(h.run, "A", task("long one", 40), after)
    log = h.log
    assert all(r.batch_size <= 2 for r in h.results.values())
    # Each short one takes the free slot at the step after the previous one finished,
    # all while A decodes: A is in every step, alone at first and at the end.
    order = sorted(shorts, key=log.first)
    for before, after_it in itertools.pairwise(order):
        assert log.last(before) < log.first(after_it)
    assert log.last(order[-1]) < log.last("A")
    alone_first = recording.sizes.index(2)
    assert alone_first in (1, 2)  # the shorts joined at the step after A's first
    paired = sum(len(log.tokens[name]) for name in shorts)  # C ends early on end-of-text
    assert paired == 11
    assert recording.sizes == [1] * alone_first + [2] * paired + [1] * (40 - alone_first - paired)
    assert all(h.same_as_alone(name, t) for name, t in shorts.items())
    assert h.same_as_alone("A", task("long one", 40))
    assert h.executor.queue_depth() == 0


async def test_a_cancelled_task_leaves_at_the_next_step_and_frees_its_slot(
    autojump_clock: Any,
) -> None:
    h = Harness(loaded("tiny-gpt"), max_batch=1)
    started = trio.Event()
    at_exit: list[int] = []

    async def client_who_leaves(scope: trio.CancelScope) -> None:
        with scope:
            try:
                await h.run("long", task("long one", 120), lambda n: n == 2 and started.set())
            finally:
                at_exit.append(len(h.log.tokens["long"]))

    async with h.executor.running(), trio.open_nursery() as nursery:
        scope = trio.CancelScope()
        nursery.start_soon(client_who_leaves, scope)
        await started.wait()
        nursery.start_soon(h.run, "short", task("waiting", 6))  # queued: the slot is taken
        scope.cancel()  # the client goes away
    assert scope.cancelled_caught
    log = h.log
    # Dropped within a step or two, and its hook never ran after run() ended.
    assert at_exit == [len(log.tokens["long"])] and len(log.tokens["long"]) < 6
    assert log.last("long") < log.first("short")
    assert h.same_as_alone("short", task("waiting", 6)) and h.results["short"].batch_size == 1
    assert h.executor.queue_depth() == 0


async def test_a_failing_step_fails_the_tasks_in_it_and_the_lane_goes_on(
    autojump_clock: Any,
) -> None:
    """The choice: a step that raises fails every task *in that step* (their caches may
    be half-extended); queued tasks are untouched and the lane keeps serving."""
    poison = [256, *b"poison"]
    recording = Recording(fail_step=lambda ds: any(d.prompt == poison for d in ds))
    h = Harness(recording.model, max_batch=2)
    async with h.executor.running():
        async with trio.open_nursery() as nursery:

            def after(count: int) -> None:
                if count == 2:  # the poison joins the running task; "queued" waits
                    nursery.start_soon(h.run, "poison", task("poison", 5))
                    nursery.start_soon(h.run, "queued", task("queued", 5))

            nursery.start_soon(h.run, "running", task("long one", 50), after)
        assert set(h.errors) == {"running", "poison"}
        for exc in h.errors.values():
            assert isinstance(exc, InternalError)
            assert "tiny-gpt failed running this task: RuntimeError" in str(exc)
        assert "poison" not in h.log.tokens and len(h.log.tokens["running"]) < 10
        assert h.same_as_alone("queued", task("queued", 5))
        await h.run("after", task("after", 4))  # still serving
    assert h.same_as_alone("after", task("after", 4))
    assert h.executor.queue_depth() == 0


async def test_a_task_that_cannot_open_fails_alone(autojump_clock: Any) -> None:
    model = loaded("tiny-gpt")
    real = model.generator()
    gen = copy.copy(real)

    def open_(inputs: Values, params: dict[str, int]) -> Decoding:
        if inputs["prompt"] == ["unreadable"]:
            raise InvalidInput("cannot tokenize text: a tokenizer failure")
        return real.open(inputs, params)

    gen.open = open_  # type: ignore[method-assign]
    h = Harness(replace(model, handler=gen), max_batch=4)
    async with h.executor.running(), trio.open_nursery() as nursery:

        def after(count: int) -> None:
            if count == 2:
                nursery.start_soon(h.run, "bad", task("unreadable", 5))

        nursery.start_soon(h.run, "good", task("long one", 20), after)
    assert isinstance(h.errors.get("bad"), InvalidInput) and set(h.errors) == {"bad"}
    assert h.same_as_alone("good", task("long one", 20))


async def test_a_raising_hook_stops_its_own_task_only(autojump_clock: Any) -> None:
    h = Harness(loaded("tiny-gpt"), max_batch=4)

    def fail_third(count: int) -> None:
        if count == 3:
            raise HookFailed("the stream to the client broke")

    async with h.executor.running(), trio.open_nursery() as nursery:
        nursery.start_soon(h.run, "broken", task("long one", 30), fail_third)
        nursery.start_soon(h.run, "other", task("other", 12, seed=4))
    assert isinstance(h.errors.get("broken"), HookFailed) and set(h.errors) == {"broken"}
    assert len(h.log.tokens["broken"]) == 3  # never called again once it raised
    assert h.same_as_alone("other", task("other", 12, seed=4))


@pytest.mark.parametrize("seed", [None, 11])  # greedy, sampled
async def test_a_task_is_the_same_alone_static_and_joining_at_any_step(
    autojump_clock: Any, seed: int | None
) -> None:
    mine = task("The mesh runs", 24, seed)
    expected = alone(mine)
    static = Harness(loaded("tiny-gpt"), max_batch=8, continuous=False)
    async with static.executor.running(), trio.open_nursery() as nursery:
        for i, t in enumerate([task("x", 9), mine, task("y" * 20, 40, seed=2)]):
            nursery.start_soon(static.run, str(i), t)
    assert static.results["1"].batch_size == 3 and static.same_as_alone("1", mine)
    for join in (1, 4, 11):
        h = Harness(loaded("tiny-gpt"), max_batch=8)
        async with h.executor.running(), trio.open_nursery() as nursery:

            def after(count: int, join: int = join, h: Harness = h) -> None:
                if count == join:
                    nursery.start_soon(h.run, "mine", mine)

            nursery.start_soon(h.run, "long", task("long one", 60, seed=5), after)
            nursery.start_soon(h.run, "other", task("other", 30))
        assert (h.results["mine"].outputs, h.results["mine"].commitment) == expected
        assert h.results["mine"].batch_size == 3
        assert join <= h.log.events[h.log.first("mine") - 1][1] < join + 5


async def test_other_lanes_run_between_steps(autojump_clock: Any) -> None:
    mlp = load_model(Zoo.builtin().manifest("tiny-mlp"), device="cpu")
    gpt = loaded("tiny-gpt")
    executor = Executor([gpt, mlp])
    log = Log()
    x = from_torch(torch.ones(1, 32))
    async with executor.running(), trio.open_nursery() as nursery:

        async def classify() -> None:
            await executor.run(mlp.model_root, {"x": x}, {})
            log.events.append(("mlp", 1))

        def after(count: int) -> None:
            if count == 2:
                nursery.start_soon(classify)

        t = task("long one", 60)
        nursery.start_soon(
            lambda: executor.run(gpt.model_root, *t, on_tokens=log.hook("gpt", after))
        )
    assert log.first("gpt") < log.first("mlp") < log.last("gpt")


async def test_only_generation_models_take_a_token_hook() -> None:
    mlp = load_model(Zoo.builtin().manifest("tiny-mlp"), device="cpu")
    executor = Executor([mlp])
    async with executor.running():
        with pytest.raises(InvalidInput, match="emits no tokens"):
            await executor.run(
                mlp.model_root, {"x": from_torch(torch.ones(1, 32))}, {}, on_tokens=print
            )
    assert executor.queue_depth() == 0
