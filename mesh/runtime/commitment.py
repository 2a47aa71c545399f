"""Activation commitments for language models, and their verifier.

In the spirit of TOPLOC (Prime Intellect, arXiv 2501.16007): the worker keeps,
for every chunk of ``chunk`` generated tokens, the ``k`` largest-magnitude values
of the final hidden states (after the last layer norm) that produced those
tokens, as (flat index within the chunk: u32, value: float16). Layout::

    b"MAC1" | chunk u16 | k u16 | n_tokens u32 | hidden u32      (16 bytes)
    per chunk: k' indices u32 LE, then k' values f16 LE

where ``k' = ceil(k * rows / chunk)`` for a chunk of ``rows`` tokens (a short last
chunk keeps k/chunk values per token, like the full ones). With chunk=32, k=32
that is 6 bytes per generated token (plus 16).

Verification (:func:`verify_generation`) runs one forward pass over prompt +
output and checks, for every chunk, that (1) the recomputed value at each
committed index is within ``hidden_abs`` (plus float16 rounding) of the
committed one, and (2) each committed value is at least the recomputed k-th
largest magnitude minus the tolerance, so the worker cannot commit arbitrary
small activations. Then it checks the *sampling*, which activations alone do not
prove (:mod:`mesh.runtime.sampling_check`): for each step it recomputes the
logits, replays the task's seeded uniform stream, and requires the emitted token
to be one the sampler could have picked: greedy, a token within
``2 * logit_abs`` of the maximum; sampled, a token inside the top-k / top-p set (up to
ties within tolerance) whose inverse-CDF interval contains the replayed uniform,
widened by a bound on how far the tolerance can move cumulative masses
(:func:`mesh.runtime.sampling.slack`) plus the mass of tokens whose order the
tolerance leaves undecided.

Residual risk, stated honestly: (a) within the tolerance a worker may pick a
different token where two candidates are nearly tied or the uniform falls
within ``eps`` of an interval edge (rare for a fixed honest seed, but a worker
can exploit each such step); (b) like TOPLOC, small weight changes whose effect
stays under ``hidden_abs`` pass by design: measured on tiny-gpt, Gaussian noise
of 1e-4 on every weight moved hidden states by 0.045, which passes when the
verifier compares against bfloat16 (0.1) but not float32 (1e-4); one tensor
scaled by 1.1 moved them by 0.22 and fails everywhere. So the verifier should
compare within the tightest runtime class it can reproduce;
(c) the checks cover the committed positions only: the prompt is trusted to be
what the task signed, which the receipt's input hash binds; (d) a worker that
really runs the model but with another seed is caught only through the
sampling check, whose power grows with the number of sampled steps.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import CommitmentMismatch, InvalidInput
from mesh.runtime.convert import to_torch
from mesh.runtime.manifest import Tolerance
from mesh.runtime.sampling import SamplingParams
from mesh.runtime.sampling_check import check_sampling

if TYPE_CHECKING:
    from mesh.runtime.registry import LoadedModel

MAGIC = b"MAC1"
_HEADER = struct.Struct("<4sHHII")
DEFAULT_CHUNK = 32
DEFAULT_K = 32
MAX_CHUNK = 4096
# float16 keeps 11 significant bits: a committed value is off by up to 2^-11 relative.
F16_REL = 2.0**-10
F16_MAX = 65504.0


@dataclass(frozen=True)
class Commitment:
    """A decoded commitment: per chunk, flat indices and values."""

    chunk: int
    k: int
    n_tokens: int
    hidden: int
    indices: list[torch.Tensor]  # int64 [k'] per chunk
    values: list[torch.Tensor]  # float32 [k'] per chunk


def commit_activations(
    hidden: torch.Tensor, *, chunk: int = DEFAULT_CHUNK, k: int = DEFAULT_K
) -> bytes:
    """Commit to final hidden states ``[n, H]`` (one row per generated token)."""
    if not 1 <= chunk <= MAX_CHUNK or not 1 <= k <= 0xFFFF:
        raise ValueError("chunk must be in [1, 4096] and k in [1, 65535]")
    rows = hidden.detach().float().cpu()
    n, width = int(rows.shape[0]), int(rows.shape[1])
    parts = [_HEADER.pack(MAGIC, chunk, k, n, width)]
    for start in range(0, n, chunk):
        flat = rows[start : start + chunk].reshape(-1)
        top = torch.topk(flat.abs(), _kept(k, chunk, min(chunk, n - start), width)).indices
        idx = torch.sort(top).values
        vals = flat[idx].clamp(-F16_MAX, F16_MAX).to(torch.float16)
        parts.append(idx.to(torch.int64).numpy().astype("<u4").tobytes())
        parts.append(vals.numpy().astype("<f2").tobytes())
    return b"".join(parts)


def _kept(k: int, chunk: int, rows: int, width: int) -> int:
    """Values kept for a chunk of ``rows`` tokens: k per full chunk, pro rata otherwise."""
    return min(-(-k * rows // chunk), rows * width)


def decode_commitment(data: bytes) -> Commitment:
    """Parse a commitment. Raises CommitmentMismatch when malformed."""
    if len(data) < _HEADER.size:
        raise CommitmentMismatch("commitment too short")
    magic, chunk, k, n, width = _HEADER.unpack_from(data)
    if magic != MAGIC or not 1 <= chunk <= MAX_CHUNK or k < 1 or width < 1:
        raise CommitmentMismatch("commitment header is invalid")
    indices, values, offset = [], [], _HEADER.size
    for start in range(0, n, chunk):
        count = _kept(k, chunk, min(chunk, n - start), width)
        end = offset + 6 * count
        if end > len(data):
            raise CommitmentMismatch("commitment truncated")
        idx = np.frombuffer(data, dtype="<u4", count=count, offset=offset).astype(np.int64)
        val = np.frombuffer(data, dtype="<f2", count=count, offset=offset + 4 * count)
        indices.append(torch.from_numpy(idx.copy()))
        values.append(torch.from_numpy(val.astype(np.float32)))
        offset = end
    if offset != len(data):
        raise CommitmentMismatch("commitment has trailing bytes")
    return Commitment(chunk, k, n, width, indices, values)


def check_activations(commitment: Commitment, hidden: torch.Tensor, *, tolerance: float) -> None:
    """Check recomputed hidden states ``[n, H]`` against a decoded commitment.

    Raises:
        CommitmentMismatch: shapes differ, or a chunk's values do not match.
    """
    rows = hidden.detach().float().cpu().clamp(-F16_MAX, F16_MAX)
    if tuple(rows.shape) != (commitment.n_tokens, commitment.hidden):
        raise CommitmentMismatch(
            f"commitment covers {commitment.n_tokens}x{commitment.hidden} activations, "
            f"recomputed {list(rows.shape)}"
        )
    for number, (idx, val) in enumerate(zip(commitment.indices, commitment.values, strict=True)):
        start = number * commitment.chunk
        flat = rows[start : start + commitment.chunk].reshape(-1)
        if idx.numel() and int(idx.max()) >= flat.numel():
            raise CommitmentMismatch(f"chunk {number}: index out of range")
        if len(set(idx.tolist())) != idx.numel():
            raise CommitmentMismatch(f"chunk {number}: repeated index")
        bound = tolerance + F16_REL * val.abs()
        diff = (flat[idx] - val).abs()
        if bool((diff > bound).any()):
            worst = int(torch.argmax(diff - bound))
            raise CommitmentMismatch(
                f"chunk {number}: activation {int(idx[worst])} is {float(flat[idx][worst]):.5g}, "
                f"committed {float(val[worst]):.5g} (tolerance {float(bound[worst]):.3g})"
            )
        kth = float(torch.topk(flat.abs(), idx.numel()).values[-1])
        if float(val.abs().min()) < kth - tolerance - F16_REL * kth:
            raise CommitmentMismatch(
                f"chunk {number}: committed values are not the top-{idx.numel()}"
            )


def verify_generation(
    model: LoadedModel,
    prompt_ids: Sequence[int],
    output_ids: Sequence[int],
    params: dict[str, int],
    commitment: bytes,
    *,
    tolerance: Tolerance,
) -> None:
    """Check a generation's activation commitment and sampling with one forward pass.

    Args:
        model: the model the task names, loaded by the verifier (any device/dtype).
        prompt_ids: the prompt's token ids, as the worker's tokenizer gives them.
        output_ids: the emitted token ids (the ``token_ids`` output).
        params: the task's integer params (seed, max_tokens, temperature_milli, ...).
        commitment: the receipt's commitment bytes.
        tolerance: from the manifest, for the two runtime classes compared.

    Raises:
        CommitmentMismatch: any check fails.
    """
    gen = model.generator()
    try:
        p = SamplingParams.from_params(params, max_tokens_cap=gen.max_tokens)
    except InvalidInput as exc:
        raise CommitmentMismatch(f"the task's params are invalid: {exc}") from exc
    decoded = decode_commitment(commitment)
    prompt, output = [int(i) for i in prompt_ids], [int(i) for i in output_ids]
    if not prompt or not output:
        raise CommitmentMismatch("empty prompt or output")
    if len(prompt) + len(output) > gen.positions:
        raise CommitmentMismatch("prompt + output longer than the model's positions")
    if max(prompt + output) >= gen.vocab or min(prompt + output) < 0:
        raise CommitmentMismatch("token id out of vocabulary")
    hidden, logits = gen.prefill(prompt + output[:-1])
    start = len(prompt) - 1
    check_activations(decoded, hidden[start:], tolerance=tolerance.hidden_abs)
    check_sampling(logits[start:], output, p, logit_abs=tolerance.logit_abs, eos_id=gen.eos_id)


def verify_task_outputs(
    model: LoadedModel,
    inputs: Values,
    params: dict[str, int],
    outputs: Values,
    commitment: bytes,
    *,
    tolerance: Tolerance,
) -> None:
    """:func:`verify_generation` from a task's inputs and a result's outputs.

    Tokenizes the prompt with the verifier's own tokenizer and reads ``token_ids``.

    Raises:
        CommitmentMismatch: the outputs lack ``token_ids``, or any check fails.
    """
    try:
        prompt = model.generator().prompt_ids(inputs)
    except InvalidInput as exc:
        raise CommitmentMismatch(f"the task's inputs are invalid: {exc}") from exc
    ids = outputs.get("token_ids")
    if not isinstance(ids, Tensor) or ids.dtype != "int64" or len(ids.shape) != 1:
        raise CommitmentMismatch("outputs carry no int64 token_ids vector")
    output = [int(i) for i in to_torch(ids).tolist()]
    verify_generation(model, prompt, output, params, commitment, tolerance=tolerance)
