"""Batch-invariant building blocks shared by the zoo's architectures.

Why this exists: on CPU, ``F.linear`` picks a different float32 GEMM kernel for
different row counts (measured with torch 2.13 CPU: a row's output differs
bitwise between M=1, M=2..3 and M>=5), so a task's result would depend on the
batch it ran in. Padding the rows up to a multiple of :data:`ROW_TILE` makes
every GEMM run with full row tiles; a row's output is then the same whatever
its neighbours and position (checked in ``tests/unit/runtime/test_ops.py``).
The padding costs little on CPU, where small GEMMs are bound by reading weights.

This does not hold for cuBLAS (split-K heuristics depend on M), so the runtime
claims batch invariance on CPU only (see :mod:`mesh.runtime.device`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Rows per GEMM tile; 16 is a multiple of every CPU micro-kernel height seen here.
ROW_TILE = 16


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` whose per-row result does not depend on the other rows.

    Args:
        x: input ``[..., in_features]``.
        weight: ``[out_features, in_features]`` (a transposed view is fine).
        bias: ``[out_features]`` or None.

    Returns:
        ``[..., out_features]``.
    """
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
