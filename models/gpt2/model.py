"""GPT-2 in plain PyTorch, with the parameter names of the GPT-2 safetensors layout.

Parameters are named as in OpenAI's checkpoint (``wte.weight``, ``h.0.attn.c_attn.weight``
with Conv1D ``[in, out]`` weights, ``ln_f``), so a ``model.safetensors`` loads
as is; a ``transformer.`` prefix (``save_pretrained`` layout) is stripped and the
causal-mask buffers ``attn.bias``/``attn.masked_bias`` are ignored. The head is
tied to ``wte``.

The forward pass is *packed*: the tokens of all sequences of a batch go through
the linear layers together (batch-invariant GEMMs, see ``mesh.runtime.ops``) and
attention runs per sequence with its own key/value cache, so no padding ever
reaches another sequence's numbers. tiny-gpt uses this file with a small config.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mesh.runtime import ops

Cache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [heads, L, d]


class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored ``[in, out]``."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.linear(x, self.weight.t(), self.bias)


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = Conv1D(n_embd, 3 * n_embd)
        self.c_proj = Conv1D(n_embd, n_embd)

    def forward(
        self, x: torch.Tensor, lengths: list[int], caches: list[Cache], layer: int
    ) -> torch.Tensor:
        qkv = self.c_attn(x)
        outs = []
        for part, cache in zip(qkv.split(lengths), caches, strict=True):
            q, k, v = (self._heads(t) for t in part.chunk(3, dim=-1))
            if len(cache) > layer:
                pk, pv = cache[layer]
                k, v = torch.cat([pk, k], dim=1), torch.cat([pv, v], dim=1)
                cache[layer] = (k, v)
            else:
                cache.append((k, v))
            outs.append(self._attend(q, k, v))
        return self.c_proj(torch.cat(outs))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        n, width = t.shape
        return t.view(n, self.n_head, width // self.n_head).transpose(0, 1)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        heads, n_new, d = q.shape
        total = k.shape[1]
        scores = (q @ k.transpose(1, 2)) / math.sqrt(d)
        # Query i (at absolute position total - n_new + i) sees keys up to itself.
        pos_q = torch.arange(total - n_new, total, device=q.device).unsqueeze(1)
        pos_k = torch.arange(total, device=q.device).unsqueeze(0)
        scores = scores.masked_fill(pos_k > pos_q, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        return (probs @ v).transpose(0, 1).reshape(n_new, heads * d)


class MLP(nn.Module):
    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.c_fc = Conv1D(n_embd, 4 * n_embd)
        self.c_proj = Conv1D(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, eps: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.attn = Attention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.mlp = MLP(n_embd)

    def forward(
        self, x: torch.Tensor, lengths: list[int], caches: list[Cache], layer: int
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), lengths, caches, layer)
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """Decoder-only language model with GPT-2's layout."""

    def __init__(
        self,
        *,
        vocab_size: int,
        n_positions: int,
        n_embd: int,
        n_layer: int,
        n_head: int,
        layer_norm_epsilon: float = 1e-5,
    ) -> None:
        super().__init__()
        self.n_positions = n_positions
        # The names mesh.runtime.generate's Decoder protocol reads (any architecture).
        self.vocab_size = vocab_size
        self.max_positions = n_positions
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(n_positions, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head, layer_norm_epsilon) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, eps=layer_norm_epsilon)

    def new_cache(self) -> Cache:
        return []

    def hidden(self, ids: list[torch.Tensor], caches: list[Cache]) -> list[torch.Tensor]:
        """Final hidden states (after ``ln_f``) of new tokens, one ``[T_i, H]`` per sequence.

        Args:
            ids: the new token ids of each sequence (1-D).
            caches: one cache per sequence; extended in place.
        """
        lengths = [int(t.shape[0]) for t in ids]
        positions = [
            torch.arange(self._past(c), self._past(c) + n, device=t.device)
            for t, c, n in zip(ids, caches, lengths, strict=True)
        ]
        x = self.wte(torch.cat(ids)) + self.wpe(torch.cat(positions))
        for layer, block in enumerate(self.h):
            x = block(x, lengths, caches, layer)
        return list(self.ln_f(x).split(lengths))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of hidden states ``[M, H]`` through the tied head."""
        return ops.linear(hidden, self.wte.weight)

    @staticmethod
    def _past(cache: Cache) -> int:
        return int(cache[0][0].shape[1]) if cache else 0


def build(**config: int | float) -> GPT2:
    return GPT2(**config)  # type: ignore[arg-type]


def load_state(model: GPT2, tensors: dict[str, torch.Tensor]) -> None:
    """Load a GPT-2 checkpoint's tensors (either naming), ignoring mask buffers."""
    state = {}
    for name, value in tensors.items():
        key = name.removeprefix("transformer.")
        if key.endswith((".attn.bias", ".attn.masked_bias")) or key == "lm_head.weight":
            continue
        state[key] = value
    model.load_state_dict(state, strict=True)


def init_weights(model: GPT2, generator: torch.Generator) -> None:
    """GPT-2's init (normal 0.02, LayerNorm 1/0), drawn on CPU in name order."""
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if ".ln_" in name or name.startswith("ln_f"):
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
