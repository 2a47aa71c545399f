"""``--models auto``: the fit rule on made-up memory figures, and the CUDA path when present."""

from __future__ import annotations

import pytest

from mesh.runtime.fit import MiB, Sizing, choose

pytestmark = pytest.mark.unit


def test_models_are_taken_in_order_while_they_fit() -> None:
    decisions = choose(
        [
            Sizing("big", weights_bytes=600 * MiB),  # needs 900 MiB
            Sizing("huge", weights_bytes=2000 * MiB),  # needs 3000: does not fit
            Sizing("small", weights_bytes=10 * MiB),  # needs 15
            Sizing("absent", unavailable="weights not given (--weights absent=DIR)"),
            Sizing("tail", weights_bytes=80 * MiB),  # needs 120: only 75 left by then
        ],
        free_bytes=1100 * MiB,  # budget 990 MiB after the 10 % reserve
    )
    chosen = {d.name: d.chosen for d in decisions}
    assert chosen == {"big": True, "huge": False, "small": True, "absent": False, "tail": False}
    assert [d.need_bytes // MiB for d in decisions] == [900, 3000, 15, 0, 120]
    assert "needs 120.0 MiB, only 75.0 MiB left" in decisions[4].reason
    assert decisions[3].reason.startswith("skipped: weights not given")


def test_nothing_fits_in_no_memory() -> None:
    assert not any(d.chosen for d in choose([Sizing("m", weights_bytes=1)], free_bytes=0))


def test_overhead_and_reserve_are_the_rule() -> None:
    # 100 MiB of weights need 150 MiB; 167 MiB free leave 150.3 MiB after the reserve.
    assert choose([Sizing("m", weights_bytes=100 * MiB)], free_bytes=167 * MiB)[0].chosen
    assert not choose([Sizing("m", weights_bytes=100 * MiB)], free_bytes=166 * MiB)[0].chosen


torch = pytest.importorskip("torch")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_free_memory_is_read_afresh_and_auto_fits_on_the_gpu() -> None:
    from mesh.node.runtime_runner import device_free_bytes, models_that_fit

    before = device_free_bytes("cuda")
    assert before > 0
    block = torch.empty(256 * MiB, dtype=torch.uint8, device="cuda")  # 256 MiB taken
    after = device_free_bytes("cuda")
    assert after <= before - 200 * MiB  # the figure moves with what is allocated
    del block
    chosen = models_that_fit(device="cuda", zoo_dirs=(), weights={})
    assert "tiny-mlp" in chosen
