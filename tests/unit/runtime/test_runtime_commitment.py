"""Activation commitments and the generation verifier: honest runs pass, cheats fail."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from runtime_models import loaded

from mesh.core.values import Values
from mesh.errors import CommitmentMismatch
from mesh.runtime.commitment import (
    commit_activations,
    decode_commitment,
    verify_generation,
    verify_task_outputs,
)
from mesh.runtime.convert import to_torch
from mesh.runtime.registry import LoadedModel, load_model
from mesh.runtime.sampling import Sampler, SamplingParams
from mesh.runtime.zoo import Zoo

pytestmark = pytest.mark.unit

PROMPT = "Verify me, please: "
CASES = [
    {"max_tokens": 40},
    {"seed": 7, "max_tokens": 40, "temperature_milli": 1000},
    {"seed": 8, "max_tokens": 40, "temperature_milli": 700, "top_k": 20, "top_p_milli": 900},
]


def _generate(params: dict[str, int]) -> tuple[list[int], list[int], bytes]:
    model = loaded("tiny-gpt")
    (out,) = model.run_batch([({"prompt": [PROMPT]}, params)])
    ids = out.outputs["token_ids"]
    assert not isinstance(ids, list)
    prompt = model.generator().prompt_ids({"prompt": [PROMPT]})
    return prompt, [int(i) for i in to_torch(ids).tolist()], out.commitment


def _verify(
    model: LoadedModel, prompt: list[int], output: list[int], params: dict[str, int], c: bytes
) -> None:
    tolerance = model.manifest.tolerance("float32", model.dtype)
    verify_generation(model, prompt, output, params, c, tolerance=tolerance)


@pytest.mark.parametrize("params", CASES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_honest_runs_pass_in_any_dtype(params: dict[str, int], dtype: str) -> None:
    prompt, output, commitment = _generate(params)
    _verify(loaded("tiny-gpt", dtype), prompt, output, params, commitment)


def test_commitment_is_compact() -> None:
    _, output, commitment = _generate({"max_tokens": 64})
    assert len(commitment) == 16 + 6 * 32 * 2  # two chunks of 32 tokens, top-32 each
    assert len(commitment) / len(output) < 6.5


@pytest.mark.parametrize("params", CASES)
def test_altered_weights_fail(params: dict[str, int]) -> None:
    prompt, output, commitment = _generate(params)
    cheat = load_model(Zoo.builtin().manifest("tiny-gpt"), device="cpu")
    with torch.no_grad():
        cheat.module.state_dict()["h.1.mlp.c_fc.weight"].mul_(1.1)
    with pytest.raises(CommitmentMismatch, match="activation"):
        _verify(cheat, prompt, output, params, commitment)


def test_another_model_fails() -> None:
    prompt, output, commitment = _generate(CASES[1])
    manifest = Zoo.builtin().manifest("tiny-gpt")
    other = replace(manifest, weights={"source": "seed", "seed": 1}, model_root=None)
    with pytest.raises(CommitmentMismatch):
        _verify(load_model(other, device="cpu"), prompt, output, CASES[1], commitment)


def test_tokens_of_a_cheaper_model_fail_even_with_honest_activations() -> None:
    # The worker drafts tokens elsewhere, then commits the real model's activations over
    # them: the activations check passes, the sampling check must not.
    model = loaded("tiny-gpt")
    gen = model.generator()
    prompt = gen.prompt_ids({"prompt": [PROMPT]})
    drafted = [ord(c) for c in "This text was not produced by the model at all, no."][:40]
    hidden, _ = gen.prefill(prompt + drafted[:-1])
    commitment = commit_activations(hidden[len(prompt) - 1 :])
    for params in CASES:
        with pytest.raises(CommitmentMismatch, match="step 0"):
            _verify(model, prompt, drafted, params, commitment)


def _honest_commitment(prompt: list[int], output: list[int]) -> bytes:
    hidden, _ = loaded("tiny-gpt").generator().prefill(prompt + output[:-1])
    return commit_activations(hidden[len(prompt) - 1 :])


def test_one_changed_greedy_token_fails() -> None:
    prompt, output, _ = _generate(CASES[0])
    forged = [*output[:10], (output[10] + 1) % 256, *output[11:]]
    with pytest.raises(CommitmentMismatch, match=r"step 10: .* not the greedy choice"):
        _verify(loaded("tiny-gpt"), prompt, forged, CASES[0], _honest_commitment(prompt, forged))


def test_tokens_from_another_seed_fail() -> None:
    params = CASES[1]
    prompt, output, _ = _generate({**params, "seed": 99})
    commitment = _honest_commitment(prompt, output)
    with pytest.raises(CommitmentMismatch, match="does not follow from the seed"):
        _verify(loaded("tiny-gpt"), prompt, output, params, commitment)


def test_token_outside_top_k_fails() -> None:
    params = CASES[2]
    prompt, output, _ = _generate(params)
    _, logits = loaded("tiny-gpt").generator().prefill(prompt + output[:-1])
    worst = int(torch.argmin(logits[len(prompt) - 1 + 5]))
    forged = [*output[:5], worst, *output[6:]]
    with pytest.raises(CommitmentMismatch, match=r"step 5: .* outside the top-20"):
        _verify(loaded("tiny-gpt"), prompt, forged, params, _honest_commitment(prompt, forged))


def test_short_output_without_end_of_text_fails() -> None:
    prompt, output, _ = _generate(CASES[0])
    short = output[:39]
    with pytest.raises(CommitmentMismatch, match="without end-of-text"):
        _verify(loaded("tiny-gpt"), prompt, short, CASES[0], _honest_commitment(prompt, short))


@pytest.mark.parametrize("cut", [1, 17, 100])
def test_damaged_commitment_bytes_fail(cut: int) -> None:
    prompt, output, commitment = _generate(CASES[0])
    with pytest.raises(CommitmentMismatch):
        _verify(loaded("tiny-gpt"), prompt, output, CASES[0], commitment[:-cut])
    flipped = bytearray(commitment)
    flipped[-cut] ^= 0x40  # a value's exponent bits
    with pytest.raises(CommitmentMismatch):
        _verify(loaded("tiny-gpt"), prompt, output, CASES[0], bytes(flipped))


def test_commitment_round_trips() -> None:
    hidden = torch.randn(70, 8, generator=torch.Generator().manual_seed(0))
    decoded = decode_commitment(commit_activations(hidden, chunk=32, k=5))
    assert (decoded.n_tokens, decoded.hidden, len(decoded.indices)) == (70, 8, 3)
    flat = hidden[32:64].reshape(-1)
    expected = torch.topk(flat.abs(), 5).indices.sort().values
    assert torch.equal(decoded.indices[1], expected)
    torch.testing.assert_close(decoded.values[1], flat[expected], atol=1e-2, rtol=1e-3)
    assert decoded.indices[2].numel() == 1  # a 6-token tail keeps ceil(5 * 6 / 32) values


def test_short_generations_stay_compact() -> None:
    one_token = commit_activations(torch.randn(1, 64))
    assert len(one_token) == 16 + 6  # one value for one token, not a whole chunk's 32


def test_sampler_stream_is_fixed_by_the_seed() -> None:
    params = SamplingParams(seed=123, max_tokens=4, temperature_milli=1000)
    assert [Sampler(params).uniform() for _ in range(2)] == [Sampler(params).uniform()] * 2
    a, b = Sampler(params), Sampler(params)
    assert [a.uniform() for _ in range(5)] == [b.uniform() for _ in range(5)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("params", CASES)
def test_generation_on_cuda_verifies_on_cpu(params: dict[str, int]) -> None:
    gpu = load_model(Zoo.builtin().manifest("tiny-gpt"), device="cuda")
    (out,) = gpu.run_batch([({"prompt": [PROMPT]}, params)])
    assert gpu.runtime_claim(1)["batch_invariant"] is False
    ids = out.outputs["token_ids"]
    assert not isinstance(ids, list)
    prompt = gpu.generator().prompt_ids({"prompt": [PROMPT]})
    output = [int(i) for i in to_torch(ids).tolist()]
    for dtype in ("float32", "bfloat16"):
        _verify(loaded("tiny-gpt", dtype), prompt, output, params, out.commitment)


def test_invalid_params_are_a_mismatch() -> None:
    prompt, output, commitment = _generate(CASES[0])
    with pytest.raises(CommitmentMismatch, match="params are invalid"):
        _verify(loaded("tiny-gpt"), prompt, output, {"max_tokens": 40, "top_k": -3}, commitment)


def test_many_honest_sampled_runs_pass_in_bfloat16() -> None:
    # The tolerances must not reject honest work: a spread of params, one batch.
    model = loaded("tiny-gpt")
    temperatures, top_ks, top_ps = (200, 500, 1000, 2000), (0, 3, 40), (1000, 500, 900)
    tasks = [
        (
            {"prompt": [f"honest run {i}"]},
            {
                "seed": i,
                "max_tokens": 32,
                "temperature_milli": temperatures[i % 4],
                "top_k": top_ks[i % 3],
                "top_p_milli": top_ps[(i // 3) % 3],
            },
        )
        for i in range(12)
    ]
    verifier = loaded("tiny-gpt", "bfloat16")
    for (inputs, params), out in zip(tasks, model.run_batch(tasks), strict=True):
        ids = out.outputs["token_ids"]
        assert not isinstance(ids, list)
        prompt = model.generator().prompt_ids(inputs)
        output = [int(i) for i in to_torch(ids).tolist()]
        _verify(verifier, prompt, output, params, out.commitment)


def test_verify_from_task_inputs_and_outputs() -> None:
    model = loaded("tiny-gpt")
    inputs: Values = {"prompt": [PROMPT]}
    (out,) = model.run_batch([(inputs, CASES[1])])
    tolerance = model.manifest.tolerance("float32")
    verify_task_outputs(model, inputs, CASES[1], out.outputs, out.commitment, tolerance=tolerance)
    with pytest.raises(CommitmentMismatch):  # another prompt, same outputs
        verify_task_outputs(
            model, {"prompt": ["other"]}, CASES[1], out.outputs, out.commitment, tolerance=tolerance
        )
    with pytest.raises(CommitmentMismatch, match="token_ids"):
        verify_task_outputs(model, inputs, CASES[1], {}, out.commitment, tolerance=tolerance)
