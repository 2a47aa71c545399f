"""tiny-gpt generation: determinism, batch invariance, sampling params, validation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from runtime_models import loaded

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.convert import from_torch, to_torch
from mesh.runtime.output import ModelOutput

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
