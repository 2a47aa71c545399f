"""Text generation (``kind = "generate"``) with batched decoding and commitments.

Inputs: ``{"prompt": [text]}`` or ``{"prompt_ids": int64 [L]}`` (one prompt per
task). Outputs: ``{"text": [text], "token_ids": int64 [n]}``; ``n`` is
``max_tokens`` unless the model emitted its end-of-text token (kept as the last id).

Decoding goes step by step (:meth:`Generator.step`): in one forward pass every
sequence of the step gets one new token; a sequence's first step prefills its
whole prompt, its later steps feed back its last token, with a key/value cache
per sequence. The architecture keeps rows apart (packed batch-invariant GEMMs,
attention per sequence: ``models/gpt2/model.py``) and each task samples from its
own seeded stream (:mod:`mesh.runtime.sampling`), so on CPU a task's tokens and
commitment depend neither on its company nor on the step at which it joined.
:meth:`Generator.generate` runs a fixed set to the end (static batching); the
executor's continuous batching lets sequences join and leave between steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.checks import DEFAULT_MAX_PROMPT_TOKENS, DEFAULT_MAX_TOKENS
from mesh.runtime.commitment import DEFAULT_CHUNK, DEFAULT_K, commit_activations
from mesh.runtime.convert import from_torch, to_torch
from mesh.runtime.manifest import Manifest
from mesh.runtime.output import ModelOutput
from mesh.runtime.sampling import Sampler, SamplingParams
from mesh.runtime.tokenize import TextTokenizer

# The limits' defaults live with the torch-free checks a client runs too.
__all__ = ["DEFAULT_MAX_PROMPT_TOKENS", "DEFAULT_MAX_TOKENS", "Decoder", "Decoding", "Generator"]


class Decoder(Protocol):
    """What a language model architecture offers (see ``models/gpt2/model.py``).

    Attributes:
        vocab_size: token ids are in ``[0, vocab_size)``.
        max_positions: the most tokens (prompt + output) one sequence may hold.
    """

    vocab_size: int
    max_positions: int

    def new_cache(self) -> Any: ...

    def hidden(self, ids: list[torch.Tensor], caches: list[Any]) -> list[torch.Tensor]: ...

    def logits(self, hidden: torch.Tensor) -> torch.Tensor: ...


class Generator:
    """Runs a decoder with ``hidden(ids, caches)``, ``logits(hidden)`` and ``new_cache()``."""

    def __init__(
        self,
        manifest: Manifest,
        module: Decoder,
        tokenizer: TextTokenizer | None,
        *,
        device: str,
        dtype: torch.dtype,
        eos_id: int | None,
    ) -> None:
        self.manifest = manifest
        self.module = module
        self.tokenizer = tokenizer
        self.device = device
        self.eos_id = eos_id
        self.vocab = int(module.vocab_size)
        self.positions = int(module.max_positions)
        self.max_tokens = manifest.limit("max_tokens", DEFAULT_MAX_TOKENS)
        self.max_prompt = manifest.limit("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS)
        self.chunk = manifest.commitment.get("chunk", DEFAULT_CHUNK)
        self.k = manifest.commitment.get("k", DEFAULT_K)

    def sampling(self, params: dict[str, int]) -> SamplingParams:
        """Checked sampling params. Raises InvalidInput."""
        return SamplingParams.from_params(params, max_tokens_cap=self.max_tokens)

    def prompt_ids(self, inputs: Values) -> list[int]:
        """The prompt's token ids. Raises InvalidInput."""
        has_text, has_ids = "prompt" in inputs, "prompt_ids" in inputs
        if has_text == has_ids:
            raise InvalidInput("give exactly one of prompt (text) or prompt_ids")
        if has_text:
            if self.tokenizer is None:
                raise InvalidInput(f"{self.manifest.name} has no tokenizer here: send prompt_ids")
            texts = inputs["prompt"]
            assert isinstance(texts, list)
            if len(texts) != 1:
                raise InvalidInput("prompt must hold exactly one text")
            if len(texts[0]) > 8 * self.max_prompt:  # bounds tokenizer work before the exact check
                raise InvalidInput(f"prompt longer than {self.max_prompt} tokens")
            ids = self.tokenizer.encode(texts[0])
        else:
            raw = inputs["prompt_ids"]
            assert isinstance(raw, Tensor)
            if raw.numel > self.max_prompt:
                raise InvalidInput(f"prompt longer than {self.max_prompt} tokens")
            ids = [int(i) for i in to_torch(raw).tolist()]
        if not ids:
            raise InvalidInput("empty prompt")
        if len(ids) > self.max_prompt:
            raise InvalidInput(f"prompt has {len(ids)} tokens, at most {self.max_prompt}")
        if min(ids) < 0 or max(ids) >= self.vocab:
            raise InvalidInput(f"token ids must be in [0, {self.vocab})")
        return ids

    def validate(self, inputs: Values, params: dict[str, int]) -> None:
        p = self.sampling(params)
        ids = self.prompt_ids(inputs)
        if len(ids) + p.max_tokens > self.positions:
            raise InvalidInput(
                f"prompt ({len(ids)}) + max_tokens ({p.max_tokens}) exceeds "
                f"{self.positions} positions"
            )

    def run_batch(self, items: list[tuple[Values, dict[str, int]]]) -> list[ModelOutput]:
        decodings = [self.open(inputs, params) for inputs, params in items]
        self._run_to_end(decodings)
        return [self.output(d) for d in decodings]

    def open(self, inputs: Values, params: dict[str, int]) -> Decoding:
        """A task's sequence, ready for its first (prefill) step. Raises InvalidInput."""
        return self.start(self.prompt_ids(inputs), Sampler(self.sampling(params)))

    def start(self, prompt: Sequence[int], sampler: Sampler) -> Decoding:
        """A sequence for checked prompt ids, ready for its first (prefill) step."""
        return Decoding(list(prompt), sampler, self.module.new_cache())

    def step(self, decodings: Sequence[Decoding]) -> None:
        """One forward pass: every sequence gets exactly one new token.

        A sequence's first step feeds its whole prompt, later ones its last token;
        sequences at any stage share the pass. Each is marked finished when it
        reaches its ``max_tokens`` or emits the end-of-text id.

        Raises:
            ValueError: no sequences, or one already finished.
        """
        if not decodings or any(d.finished for d in decodings):
            raise ValueError("step needs one or more unfinished sequences")
        feed = [
            torch.tensor([d.tokens[-1]], device=self.device)
            if d.tokens
            else torch.tensor(d.prompt, dtype=torch.int64, device=self.device)
            for d in decodings
        ]
        with torch.inference_mode():
            hidden = self.module.hidden(feed, [d.cache for d in decodings])
            last = torch.stack([h[-1] for h in hidden])
            logits = self.module.logits(last).float().cpu()
            last_cpu = last.float().cpu()
            for row, d in enumerate(decodings):
                token = d.sampler.choose(logits[row])
                d.tokens.append(token)
                # A copy, not a view: a view would keep the whole step's [batch, H]
                # tensor alive for as long as this sequence runs.
                d.states.append(last_cpu[row].clone())
                d.finished = len(d.tokens) >= d.sampler.params.max_tokens or token == self.eos_id

    def output(self, decoding: Decoding) -> ModelOutput:
        """A sequence's outputs (text, token ids) and activation commitment."""
        tokens = decoding.tokens
        return ModelOutput(
            {
                "text": [self.tokenizer.decode(tokens) if self.tokenizer is not None else ""],
                "token_ids": from_torch(torch.tensor(tokens, dtype=torch.int64)),
            },
            commit_activations(torch.stack(decoding.states), chunk=self.chunk, k=self.k),
        )

    def generate(
        self, prompts: Sequence[list[int]], samplers: Sequence[Sampler]
    ) -> tuple[list[list[int]], list[torch.Tensor]]:
        """Decode all prompts together, to the end (static batching).

        Returns:
            Per task, the emitted ids and the final hidden states ``[n, H]`` (float32,
            CPU) that produced them, the rows the activation commitment covers.
        """
        decodings = [self.start(p, s) for p, s in zip(prompts, samplers, strict=True)]
        self._run_to_end(decodings)
        return [d.tokens for d in decodings], [torch.stack(d.states) for d in decodings]

    def _run_to_end(self, decodings: list[Decoding]) -> None:
        active = decodings
        while active:
            self.step(active)
            active = [d for d in active if not d.finished]

    def prefill(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass over ``ids``: final hidden states and logits, float32 on CPU."""
        with torch.inference_mode():
            feed = torch.tensor(ids, dtype=torch.int64, device=self.device)
            (hidden,) = self.module.hidden([feed], [self.module.new_cache()])
            logits = self.module.logits(hidden)
        return hidden.float().cpu(), logits.float().cpu()


@dataclass(eq=False)
class Decoding:
    """One sequence being decoded: prompt, sampler, cache, and what it emitted so far.

    Attributes:
        prompt: the prompt's token ids.
        sampler: the task's seeded sampler (anything with ``params.max_tokens`` and
            ``choose(logits)``).
        cache: the architecture's key/value cache, extended by each step.
        tokens: the ids emitted so far, one per step.
        states: the final hidden state (float32, CPU) that produced each token.
        finished: reached ``max_tokens`` or emitted the end-of-text id.
    """

    prompt: list[int]
    sampler: Sampler
    cache: Any
    tokens: list[int] = field(default_factory=list)
    states: list[torch.Tensor] = field(default_factory=list)
    finished: bool = False
