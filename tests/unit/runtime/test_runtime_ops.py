"""Batch invariance of the zoo's linear layers on CPU."""

from __future__ import annotations

import pytest
import torch

from mesh.runtime import ops

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("k", "n"), [(32, 64), (384, 1536), (64, 257)])
@pytest.mark.parametrize("transposed", [False, True])
def test_a_row_gives_the_same_bits_in_any_batch(k: int, n: int, transposed: bool) -> None:
    g = torch.Generator().manual_seed(k + n)
    weight = torch.randn(n, k, generator=g)
    if transposed:  # GPT-2's Conv1D keeps [in, out] and passes a transposed view
        weight = torch.randn(k, n, generator=g).t()
    bias = torch.randn(n, generator=g)
    rows = torch.randn(70, k, generator=g)
    alone = ops.linear(rows[5:6], weight, bias)[0]
    for m in (6, 7, 16, 17, 33, 70):
        assert torch.equal(ops.linear(rows[:m], weight, bias)[5], alone)
    # and it is the ordinary linear map
    torch.testing.assert_close(
        alone, torch.nn.functional.linear(rows[5], weight, bias), atol=1e-4, rtol=1e-4
    )


def test_plain_linear_is_not_batch_invariant_here() -> None:
    # Why ops.linear exists: the float32 kernel for one row differs from a batch's.
    g = torch.Generator().manual_seed(0)
    weight, rows = torch.randn(512, 128, generator=g), torch.randn(64, 128, generator=g)
    alone = torch.nn.functional.linear(rows[:1], weight)[0]
    batched = torch.nn.functional.linear(rows, weight)[0]
    if torch.equal(alone, batched):
        pytest.skip("this CPU's BLAS happens to be batch-invariant")
    assert not torch.equal(alone, batched)


def test_linear_keeps_leading_dims() -> None:
    x = torch.ones(2, 3, 4)
    assert ops.linear(x, torch.ones(5, 4)).shape == (2, 3, 5)


def test_self_check_passes_on_this_machine() -> None:
    assert ops.self_check()


def test_turning_padding_off_changes_the_claim() -> None:
    from mesh.runtime.device import runtime_class

    assert runtime_class("cpu", "float32")["batch_invariant"] is True
    ops.set_batch_invariant(False)
    try:
        assert runtime_class("cpu", "float32")["batch_invariant"] is False
        x, w = torch.randn(3, 8), torch.randn(5, 8)
        assert torch.equal(ops.linear(x, w), torch.nn.functional.linear(x, w))
    finally:
        ops.set_batch_invariant(True)


def test_the_streams_runtime_class_keys_name_every_key_of_the_runtime_class() -> None:
    # A stream's continuation compares runtime classes by mesh.core.partials.CLASS_KEYS:
    # a key the runtime claims and that list lacks would go unchecked.
    from mesh.core.partials import CLASS_KEYS
    from mesh.runtime.device import runtime_class

    assert set(runtime_class("cpu", "float32")) <= set(CLASS_KEYS)
    assert "cuda" in CLASS_KEYS  # claimed on GPUs only
