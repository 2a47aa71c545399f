"""Batch-invariant building blocks shared by the zoo's architectures.

Why this exists: on CPU, ``F.linear`` picks a different float32 GEMM kernel for
different row counts (measured with torch 2.13 CPU: a row's output differs
bitwise between M=1, M=2..3 and M>=5), so a task's result would depend on the
batch it ran in. Padding the rows up to a multiple of :data:`ROW_TILE` makes
every GEMM run with full row tiles; a row's output is then the same whatever
its neighbours and position (checked in ``tests/unit/runtime/test_runtime_ops.py``
and, on the machine itself, by :func:`self_check`).

The price, measured on this 2-core CPU for a GPT-2-sized layer (768 -> 3072):
one row alone takes ~0.77 ms padded against ~0.17 ms as a plain GEMV (4.5x),
4 rows 0.80 against 0.50 ms, 16 rows the same. Tiny models barely notice (Python
overhead dominates). An operator who prefers speed turns it off with
:func:`set_batch_invariant`; the runtime claim then says ``batch_invariant: False``.

cuBLAS makes no such promise (split-K heuristics depend on M), so on CUDA the
claim is always False (see :mod:`mesh.runtime.device`).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# Rows per GEMM tile; 16 is a multiple of every CPU micro-kernel height seen here
# (4 already sufficed on this machine; 16 leaves room for wider kernels).
ROW_TILE = 16

_enabled = True


def set_batch_invariant(enabled: bool) -> None:
    """Turn row padding on (default) or off, process-wide. Call before serving."""
    global _enabled
    _enabled = enabled


def batch_invariant() -> bool:
    """Whether row padding is on."""
    return _enabled


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` whose per-row result does not depend on the other rows (when on).

    Args:
        x: input ``[..., in_features]``.
        weight: ``[out_features, in_features]`` (a transposed view is fine).
        bias: ``[out_features]`` or None.

    Returns:
        ``[..., out_features]``.
    """
    if not _enabled:
        return F.linear(x, weight, bias)
    lead = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1])
    count = rows.shape[0]
    pad = (-count) % ROW_TILE
    if pad:
        rows = torch.cat([rows, rows.new_zeros(pad, rows.shape[1])])
    out = F.linear(rows, weight, bias)
    if pad:
        out = out[:count]
    return out.reshape(*lead, out.shape[-1])


@functools.cache
def self_check() -> bool:
    """Check on this CPU that a row of :func:`linear` gives the same bits in any batch.

    Runs once per process (a few milliseconds) for float32, bfloat16 and float16.
    """
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for k, n in ((64, 192), (384, 257)):
            weight = torch.randn(n, k, generator=g).to(dtype)
            rows = torch.randn(24, k, generator=g).to(dtype)
            alone = linear(rows[3:4], weight)[0]
            for m in (4, 5, 17, 24):
                if not torch.equal(linear(rows[:m], weight)[3], alone):
                    return False
    return True
