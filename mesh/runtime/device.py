"""Devices, dtypes and the runtime class a receipt declares.

A *runtime class* is the set of facts under which two runs of one task are
promised to give identical bytes: device kind (and GPU name), dtype, torch
version, deterministic flags and thread count. Across runtime classes results
are compared with the per-model tolerances written in the manifests.
"""

from __future__ import annotations

import logging
import os

import torch

from mesh.errors import ConfigError
from mesh.runtime import ops

log = logging.getLogger(__name__)

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}

RUN_DTYPES = ("float32", "float16", "bfloat16")


def resolve_device(device: str) -> str:
    """Map ``"auto"`` to ``"cuda"`` when CUDA is present, else ``"cpu"``.

    Raises:
        ConfigError: an unknown device, or ``cuda`` asked for without CUDA.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for but CUDA is not available")
        return device
    raise ConfigError(f"unknown device {device!r}: use auto, cpu or cuda[:N]")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a run dtype name. Raises ConfigError for others."""
    if name not in RUN_DTYPES:
        raise ConfigError(f"unsupported run dtype {name!r}: use one of {', '.join(RUN_DTYPES)}")
    return TORCH_DTYPES[name]


def configure_determinism(*, threads: int | None = None, batch_invariant: bool = True) -> None:
    """Set the process-wide switches the runtime class relies on.

    Called once by the node from its configuration, never at import.

    Args:
        threads: intra-op CPU threads; None leaves torch's choice.
        batch_invariant: pad GEMM rows so a task's output does not depend on its
            batch on CPU (see :mod:`mesh.runtime.ops` for the cost).
    """
    ops.set_batch_invariant(batch_invariant)
    # cuBLAS is only reproducible with a fixed workspace (see notes/verification.md).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    if threads is not None:
        torch.set_num_threads(threads)
    log.info(
        "deterministic algorithms on, %d CPU threads, torch %s",
        torch.get_num_threads(),
        torch.__version__,
    )


def apply_thread_count() -> None:
    """Apply torch's configured CPU thread count to the *calling* thread.

    ``torch.set_num_threads`` reaches OpenMP through ``omp_set_num_threads``,
    which only sets the calling thread's value: worker threads (where the
    executor runs torch) start from OpenMP's default, all cores. On a forked
    testnet node that cost ~5 ms per tiny-mlp batch instead of ~0.5 ms
    (measured). Setting it again in the worker thread is cheap and idempotent.
    """
    torch.set_num_threads(torch.get_num_threads())


def device_name(device: str) -> str:
    """A human label of the hardware, part of the runtime class."""
    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    return "cpu"


def runtime_class(device: str, dtype: str) -> dict[str, str | int | bool]:
    """The runtime claim shared by every task a model runs on this process.

    ``batch_invariant`` is True on CPU only, when row padding is on and the
    self-check passed on this machine: the zoo pads GEMMs to full row tiles and
    runs attention per task (see :mod:`mesh.runtime.ops`); cuBLAS makes no such
    promise.
    """
    invariant = not device.startswith("cuda") and ops.batch_invariant() and ops.self_check()
    claim: dict[str, str | int | bool] = {
        "device": device_name(device),
        "dtype": dtype,
        "torch": str(torch.__version__),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
        "threads": int(torch.get_num_threads()),
        "batch_invariant": invariant,
    }
    if device.startswith("cuda"):
        # cuBLAS results are reproducible only within one toolkit (notes/verification.md).
        claim["cuda"] = str(torch.version.cuda)
    return claim
