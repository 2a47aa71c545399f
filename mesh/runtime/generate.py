"""Text generation (``kind = "generate"``) with batched decoding and commitments.

Inputs: ``{"prompt": [text]}`` or ``{"prompt_ids": int64 [L]}`` (one prompt per
task). Outputs: ``{"text": [text], "token_ids": int64 [n]}``; ``n`` is
``max_tokens`` unless the model emitted its end-of-text token (kept as the last id).

All tasks of a batch prefill together and then decode one token per step each,
with a key/value cache per task; the architecture keeps rows apart (see
``models/gpt2/model.py``), and each task samples from its own seeded stream
(:mod:`mesh.runtime.sampling`), so batching never changes a task's tokens on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.runtime.commitment import DEFAULT_CHUNK, DEFAULT_K, commit_activations
from mesh.runtime.convert import from_torch, to_torch
from mesh.runtime.manifest import Manifest
from mesh.runtime.output import ModelOutput
from mesh.runtime.sampling import Sampler, SamplingParams
from mesh.runtime.tokenize import TextTokenizer

DEFAULT_MAX_TOKENS = 64
DEFAULT_MAX_PROMPT_TOKENS = 256


class Decoder(Protocol):
    """What a language model architecture offers (see ``models/gpt2/model.py``)."""

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
        self.vocab = int(manifest.config["vocab_size"])
        self.positions = int(getattr(module, "max_positions", 0) or manifest.config["n_positions"])
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
        prompts = [self.prompt_ids(inputs) for inputs, _ in items]
        samplers = [Sampler(self.sampling(params)) for _, params in items]
        tokens, hidden = self.generate(prompts, samplers)
        return [
            ModelOutput(
                {
                    "text": [self.tokenizer.decode(t) if self.tokenizer is not None else ""],
                    "token_ids": from_torch(torch.tensor(t, dtype=torch.int64)),
                },
                commit_activations(h, chunk=self.chunk, k=self.k),
            )
            for t, h in zip(tokens, hidden, strict=True)
        ]

    def generate(
        self, prompts: Sequence[list[int]], samplers: Sequence[Sampler]
    ) -> tuple[list[list[int]], list[torch.Tensor]]:
        """Decode all prompts together.

        Returns:
            Per task, the emitted ids and the final hidden states ``[n, H]`` (float32,
            CPU) that produced them, the rows the activation commitment covers.
        """
        count = len(prompts)
        caches = [self.module.new_cache() for _ in range(count)]
        tokens: list[list[int]] = [[] for _ in range(count)]
        states: list[list[torch.Tensor]] = [[] for _ in range(count)]
        active = list(range(count))
        feed = [torch.tensor(p, dtype=torch.int64, device=self.device) for p in prompts]
        with torch.inference_mode():
            while active:
                hidden = self.module.hidden(feed, [caches[i] for i in active])
                last = torch.stack([h[-1] for h in hidden])
                logits = self.module.logits(last).float().cpu()
                last_cpu = last.float().cpu()
                still = []
                for row, task in enumerate(active):
                    token = samplers[task].choose(logits[row])
                    tokens[task].append(token)
                    states[task].append(last_cpu[row])
                    done = len(tokens[task]) >= samplers[task].params.max_tokens
                    if not done and token != self.eos_id:
                        still.append(task)
                feed = [torch.tensor([tokens[t][-1]], device=self.device) for t in still]
                active = still
        return tokens, [torch.stack(s) for s in states]

    def prefill(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass over ``ids``: final hidden states and logits, float32 on CPU."""
        with torch.inference_mode():
            feed = torch.tensor(ids, dtype=torch.int64, device=self.device)
            (hidden,) = self.module.hidden([feed], [self.module.new_cache()])
            logits = self.module.logits(hidden)
        return hidden.float().cpu(), logits.float().cpu()
