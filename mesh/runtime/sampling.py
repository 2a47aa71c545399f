"""A deterministic seeded sampler, and the bounds a verifier checks its choices with.

One task, one ``torch.Generator`` on CPU seeded with the task's ``seed``; each
sampled step draws exactly one float64 uniform ``u`` from it (greedy steps draw
none). The choice is an inverse-CDF pick over the kept tokens sorted by logit
(ties by lower id): temperature, then top-k, then top-p (nucleus over the top-k
renormalised), then the first token whose cumulative mass exceeds ``u`` times
the kept mass. All of it runs in float64 on CPU from the model's logits, so
batching or device never changes a task's random stream, and a verifier who
knows the seed recomputes every ``u`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mesh.runtime.checks import MAX_SEED, SamplingParams

# The params themselves are checked torch-free, by the same code a client runs
# before sending (mesh.runtime.checks); re-exported here for the sampler's users.
__all__ = ["MAX_SEED", "Distribution", "Sampler", "SamplingParams", "distribution", "pick", "slack"]


@dataclass(frozen=True)
class Distribution:
    """The kept tokens of one step: ids in sampling order and their cumulative mass."""

    order: torch.Tensor  # int64 [n] token ids, highest scaled logit first
    scaled: torch.Tensor  # float64 [V] logits / temperature, indexed by token id
    ranked: torch.Tensor  # float64 [V] scaled logits sorted, highest first
    cumulative: torch.Tensor  # float64 [n], cumulative mass of the kept tokens, renormalised


def distribution(logits: torch.Tensor, p: SamplingParams) -> Distribution:
    """The sampler's kept set and cumulative masses for one step (sampled mode)."""
    scaled = logits.detach().to("cpu", torch.float64) / (p.temperature_milli / 1000.0)
    values, order = torch.sort(scaled, descending=True, stable=True)
    keep = values.numel() if p.top_k == 0 else min(p.top_k, values.numel())
    probs = torch.softmax(values[:keep], dim=0)
    if p.top_p_milli < 1000:
        cum = torch.cumsum(probs, dim=0)
        # Smallest prefix whose mass reaches top_p; always at least one token.
        keep = int(
            torch.searchsorted(cum, torch.tensor(p.top_p_milli / 1000.0, dtype=torch.float64))
        )
        keep = min(keep + 1, probs.numel())
        probs = probs[:keep]
    cumulative = torch.cumsum(probs / probs.sum(), dim=0)
    return Distribution(order=order[:keep], scaled=scaled, ranked=values, cumulative=cumulative)


class Sampler:
    """The random stream and choices of one task."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self._gen = torch.Generator(device="cpu").manual_seed(params.seed)

    def uniform(self) -> float:
        """The next uniform in [0, 1) of this task's stream."""
        return float(torch.rand((), generator=self._gen, dtype=torch.float64))

    def choose(self, logits: torch.Tensor) -> int:
        """Pick the next token from one step's logits ``[V]``."""
        if self.params.greedy:
            return int(torch.argmax(logits.detach().to("cpu", torch.float64)))
        dist = distribution(logits, self.params)
        return pick(dist, self.uniform())


def pick(dist: Distribution, u: float) -> int:
    """The token the inverse CDF picks for ``u``."""
    target = torch.tensor(u, dtype=torch.float64)
    index = int(torch.searchsorted(dist.cumulative, target, right=True))
    return int(dist.order[min(index, dist.order.numel() - 1)])


def slack(delta: float) -> float:
    """Bound on how far a renormalised cumulative mass moves when logits move by ``delta``.

    Each probability changes by a factor within ``exp(+-2 delta)`` and so does the
    normaliser, so a ratio of sums moves by at most ``exp(4 delta) - 1``.
    """
    return math.expm1(4.0 * delta)
