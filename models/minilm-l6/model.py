"""all-MiniLM-L6-v2 sentence embeddings: a BERT encoder, mean pooling, L2 normalisation.

Parameter names follow the BERT checkpoint (``embeddings.*``, ``encoder.layer.N.*``),
so the packaged ``model.safetensors`` loads as is. Like ``gpt2/model.py``, tokens
of all texts go through the linear layers packed together and attention runs per
text with no padding, so a text's embedding does not depend on its batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mesh.runtime import ops


class Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.linear(x, self.weight, self.bias)


class _Holder(nn.Module):
    """An empty module to reproduce BERT's nested parameter names."""


class Embeddings(nn.Module):
    def __init__(self, vocab: int, positions: int, types: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(positions, hidden)
        self.token_type_embeddings = nn.Embedding(types, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(ids) + self.position_embeddings(positions)
        x = x + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, inter: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.attention = _Holder()
        self.attention.self = _Holder()
        self.attention.self.query = Dense(hidden, hidden)
        self.attention.self.key = Dense(hidden, hidden)
        self.attention.self.value = Dense(hidden, hidden)
        self.attention.output = _Holder()
        self.attention.output.dense = Dense(hidden, hidden)
        self.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = _Holder()
        self.intermediate.dense = Dense(hidden, inter)
        self.output = _Holder()
        self.output.dense = Dense(inter, hidden)
        self.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        sa = self.attention.self
        q, k, v = sa.query(x), sa.key(x), sa.value(x)
        parts = [
            self._attend(*(self._heads(t) for t in trio))
            for trio in zip(q.split(lengths), k.split(lengths), v.split(lengths), strict=True)
        ]
        att = self.attention.output
        x = att.LayerNorm(x + att.dense(torch.cat(parts)))
        inter = F.gelu(self.intermediate.dense(x))
        return self.output.LayerNorm(x + self.output.dense(inter))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        n, width = t.shape
        return t.view(n, self.heads, width // self.heads).transpose(0, 1)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        heads, n, d = q.shape
        probs = torch.softmax((q @ k.transpose(1, 2)).float() / math.sqrt(d), dim=-1)
        return (probs.to(v.dtype) @ v).transpose(0, 1).reshape(n, heads * d)


class MiniLM(nn.Module):
    """BERT encoder plus sentence-transformers' mean pooling and normalisation."""

    def __init__(
        self,
        *,
        vocab_size: int,
        max_position_embeddings: int,
        type_vocab_size: int,
        hidden_size: int,
        num_hidden_layers: int,
        num_attention_heads: int,
        intermediate_size: int,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.embeddings = Embeddings(
            vocab_size, max_position_embeddings, type_vocab_size, hidden_size, layer_norm_eps
        )
        self.encoder = _Holder()
        self.encoder.layer = nn.ModuleList(
            Layer(hidden_size, num_attention_heads, intermediate_size, layer_norm_eps)
            for _ in range(num_hidden_layers)
        )

    def encode(self, ids: list[torch.Tensor]) -> torch.Tensor:
        """Normalised mean-pooled embeddings ``[n, hidden]`` of token id sequences."""
        lengths = [int(t.shape[0]) for t in ids]
        positions = torch.cat(
            [torch.arange(n, device=t.device) for t, n in zip(ids, lengths, strict=True)]
        )
        x = self.embeddings(torch.cat(ids), positions)
        for layer in self.encoder.layer:
            x = layer(x, lengths)
        pooled = torch.stack([part.float().mean(dim=0) for part in x.split(lengths)])
        return F.normalize(pooled, p=2.0, dim=1)


def build(**config: int | float) -> MiniLM:
    return MiniLM(**config)  # type: ignore[arg-type]


def load_state(model: MiniLM, tensors: dict[str, torch.Tensor]) -> None:
    """Load the BERT checkpoint; the pooler and ``position_ids`` buffer are unused."""
    state = {
        k: v
        for k, v in tensors.items()
        if not k.startswith("pooler.") and k != "embeddings.position_ids"
    }
    model.load_state_dict(state, strict=True)
