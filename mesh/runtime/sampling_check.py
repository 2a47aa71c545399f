"""The sampling check: could the task's seeded sampler have emitted these tokens?

Activations alone do not prove the sampling (a worker could draft tokens with a
cheap model and then commit the real model's activations over them). Given the
logits recomputed by one forward pass, this replays the task's uniform stream
(:mod:`mesh.runtime.sampling`) and requires each emitted token to be one the
sampler could have picked within the tolerance: greedy, a token within
``2 * logit_abs`` of the maximum; sampled, a token inside the top-k / top-p set
(up to ties within tolerance) whose inverse-CDF interval contains the replayed
uniform, widened by :func:`~mesh.runtime.sampling.slack` plus the mass of tokens
whose order the tolerance leaves undecided. See :mod:`mesh.runtime.commitment`
for the residual risk.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mesh.errors import CommitmentMismatch
from mesh.runtime.sampling import Sampler, SamplingParams, distribution, slack


def check_sampling(
    logits: torch.Tensor,
    tokens: Sequence[int],
    params: SamplingParams,
    *,
    logit_abs: float,
    eos_id: int | None,
) -> None:
    """Check that each token is one the seeded sampler could have emitted.

    Args:
        logits: recomputed logits ``[n, V]``, row i producing ``tokens[i]``.
        tokens: the emitted ids.
        params: the task's sampling params (seed included).
        logit_abs: how far honest logits may differ from these.
        eos_id: the end-of-text id; generation may stop early only after it.

    Raises:
        CommitmentMismatch: a token the sampler could not have produced, or a wrong length.
    """
    n = len(tokens)
    ended = n > 0 and eos_id is not None and tokens[-1] == eos_id
    if n > params.max_tokens or (n < params.max_tokens and not ended) or n == 0:
        raise CommitmentMismatch(
            f"{n} tokens for max_tokens={params.max_tokens} without end-of-text"
        )
    if eos_id is not None and eos_id in tokens[:-1]:
        raise CommitmentMismatch("generation went on after end-of-text")
    sampler = Sampler(params)
    for step, token in enumerate(tokens):
        row = logits[step].to(torch.float64)
        if not 0 <= token < row.numel():
            raise CommitmentMismatch(f"step {step}: token {token} out of vocabulary")
        if params.greedy:
            if float(row[token]) < float(row.max()) - 2 * logit_abs:
                raise CommitmentMismatch(f"step {step}: token {token} is not the greedy choice")
            continue
        _check_sampled_step(step, row, token, params, sampler.uniform(), logit_abs)


def _check_sampled_step(
    step: int, row: torch.Tensor, token: int, params: SamplingParams, u: float, logit_abs: float
) -> None:
    dist = distribution(row, params)
    delta = 2 * logit_abs / (params.temperature_milli / 1000.0)  # scaled pairwise margin
    s = dist.scaled
    s_tok = float(s[token])
    above = s > s_tok + delta
    if params.top_k and int(above.sum()) >= params.top_k:
        raise CommitmentMismatch(f"step {step}: token {token} is outside the top-{params.top_k}")
    # Masses below are normalised over the top-k set (or the whole vocabulary).
    top = dist.ranked if not params.top_k else dist.ranked[: params.top_k]
    z = torch.logsumexp(top, dim=0)
    prob = torch.exp(s - z)
    before = float(prob[above].sum())
    eps = slack(delta)
    if params.top_p_milli < 1000 and before >= params.top_p_milli / 1000.0 + eps:
        raise CommitmentMismatch(f"step {step}: token {token} is outside the top-p set")
    kept_ids = dist.order
    position = (kept_ids == token).nonzero()
    kept_mass = float(prob[kept_ids].sum())
    if position.numel():
        i = int(position[0, 0])
        lo = float(dist.cumulative[i - 1]) if i else 0.0
        hi = float(dist.cumulative[i])
    else:
        lo = hi = 1.0  # just past the recomputed kept set, allowed only at the top edge
    near = (s - s_tok).abs() <= delta
    near[token] = False
    boundary = (s - float(s[kept_ids[-1]])).abs() <= delta
    margin = eps + (float(prob[near].sum()) + float(prob[boundary].sum())) / kept_mass + 1e-12
    if not lo - margin <= u <= hi + margin:
        raise CommitmentMismatch(
            f"step {step}: token {token} does not follow from the seed "
            f"(u={u:.6f}, its interval [{lo:.6f}, {hi:.6f}] +- {margin:.2g})"
        )
