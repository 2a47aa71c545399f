"""Conversion between wire :class:`~mesh.core.tensors.Tensor` values and torch."""

from __future__ import annotations

import numpy as np
import torch

from mesh.core.tensors import Tensor
from mesh.runtime.device import TORCH_DTYPES

_NAMES = {v: k for k, v in TORCH_DTYPES.items()}


def to_torch(t: Tensor) -> torch.Tensor:
    """A CPU torch tensor (a copy) holding the wire tensor's values."""
    raw = torch.frombuffer(bytearray(t.data), dtype=torch.uint8) if t.data else None
    dtype = TORCH_DTYPES[t.dtype]
    if raw is None:
        return torch.empty(t.shape, dtype=dtype)
    # Wire bytes are little-endian; every platform torch supports here is too.
    return raw.view(dtype).reshape(t.shape).clone()


def from_torch(x: torch.Tensor) -> Tensor:
    """A wire tensor from a torch tensor (moved to CPU, made contiguous)."""
    x = x.detach().cpu().contiguous()
    return Tensor(_NAMES[x.dtype], tuple(int(d) for d in x.shape), raw_bytes(x))


def raw_bytes(x: torch.Tensor) -> bytes:
    """Raw little-endian bytes of a tensor in its own dtype (bf16 included)."""
    x = x.detach().cpu().contiguous()
    if x.numel() == 0:
        return b""
    return bytes(np.ascontiguousarray(x.reshape(-1).view(torch.uint8).numpy()).tobytes())
