"""tiny-gpt generation: determinism, batch invariance, sampling params, validation."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, cast

import pytest
import torch
from runtime_models import loaded

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.convert import from_torch, to_torch
from mesh.runtime.generate import Decoding, Generator
from mesh.runtime.output import ModelOutput
from mesh.runtime.sampling import Sampler

pytestmark = pytest.mark.unit

SAMPLED = {"seed": 42, "max_tokens": 24, "temperature_milli": 900, "top_k": 40, "top_p_milli": 950}
GREEDY = {"max_tokens": 24}


def _ids(out: ModelOutput) -> list[int]:
    value = out.outputs["token_ids"]
    assert isinstance(value, Tensor) and value.dtype == "int64"
    return [int(i) for i in to_torch(value).tolist()]


def _run(*tasks: tuple[Values, dict[str, int]]) -> list[ModelOutput]:
    return loaded("tiny-gpt").run_batch(list(tasks))


@pytest.mark.parametrize("params", [GREEDY, SAMPLED])
def test_same_task_twice_gives_identical_outputs(params: dict[str, int]) -> None:
    task = ({"prompt": ["The mesh runs"]}, params)
    first, second = _run(task)[0], _run(task)[0]
    assert first == second
    assert len(_ids(first)) == 24
    assert first.commitment


@pytest.mark.parametrize("params", [GREEDY, SAMPLED])
def test_batching_does_not_change_a_task(params: dict[str, int]) -> None:
    task = ({"prompt": ["The mesh runs"]}, params)
    alone = _run(task)[0]
    others = [
        ({"prompt": ["x"]}, {"max_tokens": 3}),
        ({"prompt": ["a much longer prompt than the one under test"]}, {**SAMPLED, "seed": 1}),
        ({"prompt_ids": from_torch(torch.tensor([256, 1, 2, 3]))}, {"max_tokens": 30}),
    ]
    batched = _run(others[0], task, *others[1:])
    assert batched[1] == alone
    assert _run(*others, task)[3] == alone


def test_seed_drives_sampling() -> None:
    outs = _run(*[({"prompt": ["hi"]}, {**SAMPLED, "seed": s}) for s in (1, 1, 2)])
    assert _ids(outs[0]) == _ids(outs[1])
    assert _ids(outs[0]) != _ids(outs[2])


def test_top_k_one_is_greedy() -> None:
    greedy, top1 = _run(
        ({"prompt": ["hi"]}, GREEDY), ({"prompt": ["hi"]}, {**SAMPLED, "top_k": 1, "seed": 9})
    )
    assert _ids(greedy) == _ids(top1)


def test_text_prompt_equals_its_byte_ids() -> None:
    ids = from_torch(torch.tensor([256, *b"hey"], dtype=torch.int64))
    by_text, by_ids = _run(({"prompt": ["hey"]}, GREEDY), ({"prompt_ids": ids}, GREEDY))
    assert by_text == by_ids
    text = by_text.outputs["text"]
    assert isinstance(text, list) and len(text) == 1


@pytest.mark.parametrize(
    ("inputs", "params", "match"),
    [
        ({"prompt": ["hi"]}, {"max_tokens": 0}, "max_tokens"),
        ({"prompt": ["hi"]}, {"max_tokens": 129}, "max_tokens"),
        ({"prompt": ["hi"]}, {"max_tokens": 4, "temperature": 1}, "unknown params"),
        ({"prompt": ["hi"]}, {"max_tokens": 4, "top_p_milli": 0}, "top_p_milli"),
        ({"prompt": ["hi"]}, {"max_tokens": 4, "top_k": -1}, "top_k"),
        ({"prompt": ["hi"]}, {"max_tokens": 4, "seed": -1}, "seed"),
        ({"prompt": ["hi", "there"]}, {"max_tokens": 4}, "shape"),
        ({}, {"max_tokens": 4}, "exactly one"),
        ({"prompt": ["x" * 300]}, {"max_tokens": 4}, "at most 256"),
        ({"prompt_ids": from_torch(torch.tensor([1, 999]))}, {"max_tokens": 4}, r"\[0, 257\)"),
        ({"prompt_ids": from_torch(torch.tensor([1.0]))}, {"max_tokens": 4}, "int64"),
        ({"prompt_ids": from_torch(torch.zeros(2, 2, dtype=torch.int64))}, {}, "shape"),
        ({"text": ["hi"]}, {"max_tokens": 4}, "no input named text"),
    ],
)
def test_bad_inputs_are_typed_errors(inputs: Values, params: dict[str, int], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        loaded("tiny-gpt").validate(inputs, params)


def test_float_params_are_refused() -> None:
    with pytest.raises(InvalidInput, match="integer"):
        loaded("tiny-gpt").validate({"prompt": ["hi"]}, {"max_tokens": 4.0})  # type: ignore[dict-item]


def test_generation_stops_at_end_of_text() -> None:
    gen = loaded("tiny-gpt").generator()

    class EndAtThird:
        params = gen.sampling({"max_tokens": 10})
        calls = 0

        def choose(self, logits: torch.Tensor) -> int:
            self.calls += 1
            return 256 if self.calls == 3 else 65

    tokens, hidden = gen.generate([[256, 65]], [EndAtThird()])  # type: ignore[list-item]
    assert tokens == [[65, 65, 256]]
    assert hidden[0].shape == (3, 64)


@pytest.mark.slow  # loads sentence-transformers / a second torch process
def test_another_process_in_the_same_runtime_class_gives_the_same_bytes() -> None:
    task = ({"prompt": ["cross-process"]}, SAMPLED)
    (here,) = _run(task)
    code = f"""
import torch
from mesh.runtime.device import configure_determinism
from mesh.runtime.registry import load_model
from mesh.runtime.zoo import Zoo
configure_determinism(threads={torch.get_num_threads()})
model = load_model(Zoo.builtin().manifest("tiny-gpt"), device="cpu")
(out,) = model.run_batch([({task[0]!r}, {task[1]!r})])
print(out.outputs["token_ids"].data.hex(), out.commitment.hex())
"""
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    ids = here.outputs["token_ids"]
    assert isinstance(ids, Tensor)
    assert result.stdout.split() == [ids.data.hex(), here.commitment.hex()]


def _open(task: tuple[Values, dict[str, int]]) -> Decoding:
    return loaded("tiny-gpt").generator().open(*task)


def _step_until_done(active: list[Decoding], mine: Decoding, joiners: dict[int, Decoding]) -> None:
    """Step ``active`` until ``mine`` finishes; ``joiners[n]`` joins before step n."""
    gen = loaded("tiny-gpt").generator()
    step = 0
    while not mine.finished:
        if step in joiners:
            active.insert(step % (len(active) + 1), joiners[step])  # anywhere in the batch
        gen.step(active)
        active[:] = [d for d in active if not d.finished]
        step += 1


@pytest.mark.parametrize("params", [GREEDY, SAMPLED])
@pytest.mark.parametrize("join", [0, 1, 5, 17])
def test_joining_a_running_batch_at_any_step_changes_nothing(
    params: dict[str, int], join: int
) -> None:
    gen = loaded("tiny-gpt").generator()
    task = ({"prompt": ["The mesh runs"]}, params)
    (alone,) = _run(task)
    running = [
        _open(
            (
                {"prompt": ["a much longer prompt than the one under test"]},
                {**SAMPLED, "seed": 1, "max_tokens": 60},
            )
        ),
        _open(({"prompt": ["x"]}, {"max_tokens": 40})),
        _open(({"prompt_ids": from_torch(torch.tensor([256, 1, 2, 3]))}, {"max_tokens": 50})),
    ]
    for _ in range(join):  # the others decode for a while
        gen.step(running)
    mine = _open(task)
    # While it decodes, others join (their prefill shares its decode steps) and leave.
    joiners = {
        0: mine,
        3: _open(({"prompt": ["late " * 9]}, {**SAMPLED, "seed": 7, "max_tokens": 3})),
        7: _open(({"prompt": ["later"]}, {"max_tokens": 30})),
    }
    _step_until_done(running, mine, joiners)
    assert gen.output(mine) == alone  # token ids, text and commitment bytes
    assert len(mine.tokens) == 24
    # Stronger than the float16 commitment: every hidden state is bitwise the same.
    _, (hidden,) = gen.generate([gen.prompt_ids(task[0])], [Sampler(gen.sampling(params))])
    assert torch.equal(torch.stack(mine.states), hidden)


def test_step_refuses_finished_or_no_sequences() -> None:
    gen = loaded("tiny-gpt").generator()
    done = _open(({"prompt": ["hi"]}, {"max_tokens": 1}))
    gen.step([done])
    assert done.finished and len(done.tokens) == 1
    with pytest.raises(ValueError, match="unfinished"):
        gen.step([done])
    with pytest.raises(ValueError, match="unfinished"):
        gen.step([])


def test_vocabulary_and_positions_come_from_the_module() -> None:
    model = loaded("tiny-gpt")
    module = model.module
    assert (module.vocab_size, module.max_positions) == (257, 512)  # type: ignore[attr-defined]

    class Narrow:  # the same network, declaring a smaller vocabulary and window
        vocab_size = 200
        max_positions = 40

        def __getattr__(self, name: str) -> Any:
            return getattr(module, name)

    gen = Generator(
        model.manifest, cast(Any, Narrow()), None, device="cpu", dtype=torch.float32, eos_id=256
    )
    ids = from_torch(torch.tensor([1, 2, 199]))
    gen.validate({"prompt_ids": ids}, {"max_tokens": 37})
    with pytest.raises(InvalidInput, match=r"\[0, 200\)"):
        gen.validate({"prompt_ids": from_torch(torch.tensor([1, 250]))}, {"max_tokens": 4})
    with pytest.raises(InvalidInput, match="exceeds 40 positions"):
        gen.validate({"prompt_ids": ids}, {"max_tokens": 38})
