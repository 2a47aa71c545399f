"""Llama-family decoders in plain PyTorch, with the Hugging Face safetensors names.

One architecture for Llama 2/3 (with Llama 3.1's ``llama3`` RoPE scaling),
SmolLM (a Llama), Qwen2 (q/k/v biases) and Mistral (sliding-window attention):
RMSNorm, rotary position embeddings, a SwiGLU MLP and grouped-query attention.
Parameters carry the names of ``LlamaForCausalLM`` checkpoints
(``model.embed_tokens.weight``, ``model.layers.N.self_attn.q_proj.weight``,
``model.layers.N.mlp.gate_proj.weight``, ``model.norm.weight``, ``lm_head.weight``),
so a checkpoint's shards load as they are.

``build(**config)`` takes the keys of the checkpoint's ``config.json`` (Hugging
Face names). Every key either changes the computation and is implemented, or is
listed in :data:`IGNORED` with the reason it cannot change the numbers; any other
key, an unsupported ``model_type``, activation or RoPE type is refused, so no
setting is silently dropped.

The forward pass is *packed*, as in ``models/gpt2/model.py``: the tokens of all
sequences go through the linear layers together (batch-invariant GEMMs, see
``mesh.runtime.ops``) and attention runs per sequence with its own key/value
cache, so a sequence's numbers never depend on its batch company.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mesh.runtime import ops

Cache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys (rotated), values [kv, L, d]

MODEL_TYPES = ("llama", "qwen2", "mistral")
ROPE_TYPES = ("default", "linear", "llama3")
DEFAULT_ROPE_THETA = 10000.0  # transformers' default when a config names none

# Keys that describe the same computation in every model type.
_COMMON = {
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "tie_word_embeddings",
    "rope_interleaved",  # nanotron's key in SmolLM2 configs; only false (the HF layout) works
}
_PER_TYPE = {
    "llama": {"attention_bias", "mlp_bias"},
    "qwen2": {"use_sliding_window", "sliding_window", "max_window_layers", "layer_types"},
    "mistral": {"sliding_window"},
}
# Keys that cannot change an inference forward pass, with the reason.
IGNORED = {
    # bookkeeping of the transformers library and the checkpoint
    "architectures": "class names for transformers' auto classes",
    "transformers_version": "version that wrote the file",
    "torch_dtype": "stored dtype; the safetensors header is what counts, the run dtype is ours",
    "dtype": "as torch_dtype (transformers >= 4.56 spells it so)",
    "initializer_range": "initialisation of untrained weights",
    "attention_dropout": "dropout is off at inference",
    "use_cache": "transformers' KV-cache switch; the mesh always caches",
    "pretraining_tp": "tensor-parallel slicing of the same products (Llama 2 training detail)",
    # token ids: the runtime reads eos_token_id itself (mesh.runtime.registry)
    "bos_token_id": "the tokenizer adds BOS",
    "eos_token_id": "read by the runtime for stopping, not by the architecture",
    "pad_token_id": "the packed forward pass never pads",
    # generation defaults: a task's own integer params choose the sampling
    "temperature": "generation default; tasks carry their sampling params",
    "top_k": "generation default; tasks carry their sampling params",
    "top_p": "generation default; tasks carry their sampling params",
    "do_sample": "generation default; tasks carry their sampling params",
    "max_length": "generation default; tasks carry max_tokens",
    "output_attentions": "transformers output switch",
    "output_hidden_states": "transformers output switch",
    "return_dict": "transformers output switch",
    "is_llama_config": "nanotron's marker in SmolLM2 configs",
}


class Config(NamedTuple):
    """The numbers that define a Llama-family decoder (parsed from a config.json).

    A NamedTuple, not a dataclass: the zoo imports this file by path, outside
    ``sys.modules``, where dataclasses cannot resolve their annotations.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_positions: int
    rms_norm_eps: float
    inv_freq: tuple[float, ...]  # RoPE inverse frequencies (float32 values), head_dim / 2
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool
    windows: tuple[int | None, ...]  # per layer: sliding window, None for full attention


def parse_config(raw: dict[str, Any]) -> Config:
    """Check a Hugging Face config and derive the architecture's numbers.

    Raises:
        ValueError: a key is unknown or unsupported, or a value is out of range.
    """
    model_type = str(raw.get("model_type", "llama"))
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not one of {MODEL_TYPES}")
    unknown = sorted(
        k
        for k in raw
        if k not in _COMMON and k not in _PER_TYPE[model_type] and k not in IGNORED
        if not k.startswith("_")  # transformers' private keys (_name_or_path, ...)
    )
    if unknown:
        raise ValueError(f"unsupported {model_type} config keys: {', '.join(unknown)}")
    act = raw.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ValueError(f"hidden_act {act!r}: only SwiGLU (silu) is implemented")
    if _flag(raw, "rope_interleaved"):
        raise ValueError("interleaved RoPE is not implemented (checkpoints in the HF layout are)")
    heads = _positive(raw, "num_attention_heads")
    kv_heads = _positive(raw, "num_key_value_heads", heads)
    if heads % kv_heads:
        raise ValueError(f"{heads} attention heads do not split into {kv_heads} kv groups")
    hidden = _positive(raw, "hidden_size")
    head_dim = _positive(raw, "head_dim", hidden // heads)
    if head_dim % 2:
        raise ValueError("head_dim must be even for rotary embeddings")
    layers = _positive(raw, "num_hidden_layers")
    eps = float(raw.get("rms_norm_eps", 1e-6))
    if not eps > 0:
        raise ValueError("rms_norm_eps must be positive")
    attention_bias = _flag(raw, "attention_bias")
    return Config(
        vocab_size=_positive(raw, "vocab_size"),
        hidden_size=hidden,
        intermediate_size=_positive(raw, "intermediate_size"),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        max_positions=_positive(raw, "max_position_embeddings"),
        rms_norm_eps=eps,
        inv_freq=tuple(rope_inv_freq(raw, head_dim).tolist()),
        # Qwen2 always has q/k/v biases and no o_proj bias; Llama's attention_bias is all four.
        qkv_bias=model_type == "qwen2" or attention_bias,
        o_bias=attention_bias,
        mlp_bias=_flag(raw, "mlp_bias"),
        tie_word_embeddings=_flag(raw, "tie_word_embeddings"),
        windows=_windows(raw, model_type, layers),
    )


def _positive(raw: dict[str, Any], key: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if value is None:  # present as null: transformers derives the default
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, not {value!r}")
    return value


def _flag(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, not {value!r}")
    return value


def _windows(raw: dict[str, Any], model_type: str, layers: int) -> tuple[int | None, ...]:
    """Per layer sliding window, as transformers 5 decides it for each model type."""
    window = raw.get("sliding_window")
    if model_type == "qwen2":
        # Qwen2: the window applies only with use_sliding_window, to the layers
        # layer_types marks (by default those from max_window_layers on).
        if not _flag(raw, "use_sliding_window"):
            window = None
        types = raw.get("layer_types")
        if types is None:
            start = int(raw.get("max_window_layers", 28))
            types = ["sliding_attention" if i >= start else "full_attention" for i in range(layers)]
        if not isinstance(types, list) or len(types) != layers:
            raise ValueError(f"layer_types must list {layers} layer types")
        if any(t not in ("full_attention", "sliding_attention") for t in types):
            raise ValueError(f"unsupported layer_types {sorted(set(map(str, types)))}")
    else:  # Mistral: every layer uses the window when one is set
        types = ["sliding_attention"] * layers
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
        raise ValueError(f"sliding_window must be an integer or null, not {window!r}")
    if window is not None and window < 1:
        raise ValueError("sliding_window must be positive")
    return tuple(window if t == "sliding_attention" else None for t in types)


def rope_inv_freq(raw: dict[str, Any], head_dim: int) -> torch.Tensor:
    """RoPE inverse frequencies (float32), computed as transformers computes them.

    Reads transformers 5's ``rope_parameters`` or the older ``rope_theta`` plus
    ``rope_scaling`` (whose type key may be ``rope_type`` or ``type``).
    """
    if raw.get("rope_parameters") and raw.get("rope_scaling"):
        raise ValueError("both rope_parameters and rope_scaling: say it once")
    params = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ValueError(f"rope parameters must be an object, not {params!r}")
    params = dict(params)
    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    theta = params.pop("rope_theta", None)
    top = raw.get("rope_theta")
    if theta is not None and top is not None and float(theta) != float(top):
        raise ValueError(f"two rope_theta values: {theta} and {top}")
    base = float(theta if theta is not None else top if top is not None else DEFAULT_ROPE_THETA)
    if float(params.pop("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError("partial_rotary_factor other than 1.0 is not implemented")
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"rope type {rope_type!r} is not one of {ROPE_TYPES}")
    arange = torch.arange(0, head_dim, 2, dtype=torch.int64).to(dtype=torch.float)
    inv_freq = 1.0 / (base ** (arange / head_dim))
    expected = {
        "default": set(),
        "linear": {"factor"},
        "llama3": {
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        },
    }[rope_type]
    if set(params) != expected:
        raise ValueError(f"rope type {rope_type} takes {sorted(expected)}, got {sorted(params)}")
    if rope_type == "linear":
        return inv_freq / float(params["factor"])
    if rope_type == "llama3":
        return _llama3(inv_freq, params)
    return inv_freq


def _llama3(inv_freq: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    """Llama 3.1's frequency-dependent scaling (transformers' ``_compute_llama3_parameters``)."""
    factor, low, high = (
        float(p["factor"]),
        float(p["low_freq_factor"]),
        float(p["high_freq_factor"]),
    )
    old_context = float(p["original_max_position_embeddings"])
    if not high > low:
        raise ValueError("llama3 rope scaling needs high_freq_factor > low_freq_factor")
    low_wavelen, high_wavelen = old_context / low, old_context / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


class Linear(nn.Module):
    """``[out, in]`` weight, optional bias, through the batch-invariant GEMM.

    Parameters start uninitialised: a checkpoint replaces them (see :func:`load_state`).
    """

    def __init__(self, n_in: int, n_out: int, *, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.empty(n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.linear(x, self.weight, self.bias)


class Embedding(nn.Module):
    def __init__(self, vocab: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab, width))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


class RMSNorm(nn.Module):
    """Root-mean-square norm in float32, scaled in the run dtype (as transformers does)."""

    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE in the Hugging Face layout (halves, not interleaved pairs)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: Config, window: int | None) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.window = window
        self.scaling = cfg.head_dim**-0.5
        width, q_out, kv_out = (
            cfg.hidden_size,
            cfg.num_heads * cfg.head_dim,
            cfg.num_kv_heads * cfg.head_dim,
        )
        self.q_proj = Linear(width, q_out, bias=cfg.qkv_bias)
        self.k_proj = Linear(width, kv_out, bias=cfg.qkv_bias)
        self.v_proj = Linear(width, kv_out, bias=cfg.qkv_bias)
        self.o_proj = Linear(q_out, width, bias=cfg.o_bias)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        lengths: list[int],
        caches: list[Cache],
        layer: int,
    ) -> torch.Tensor:
        n = x.shape[0]
        cos, sin = rope
        q = _rotate(self.q_proj(x).view(n, self.heads, self.head_dim), cos, sin)
        k = _rotate(self.k_proj(x).view(n, self.kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).view(n, self.kv_heads, self.head_dim)
        outs = []
        parts = zip(q.split(lengths), k.split(lengths), v.split(lengths), caches, strict=True)
        for qs, ks, vs, cache in parts:
            keys, values = ks.transpose(0, 1), vs.transpose(0, 1)
            if len(cache) > layer:
                past_k, past_v = cache[layer]
                keys, values = torch.cat([past_k, keys], dim=1), torch.cat([past_v, values], dim=1)
                cache[layer] = (keys, values)
            else:
                cache.append((keys, values))
            outs.append(self._attend(qs.transpose(0, 1), keys, values))
        return self.o_proj(torch.cat(outs))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal (optionally windowed) attention of new queries ``[H, T, d]`` on ``[KV, L, d]``."""
        heads, new, d = q.shape
        total = k.shape[1]
        group = heads // self.kv_heads  # query heads per kv head, consecutive as in repeat_kv
        scores = q.reshape(self.kv_heads, group * new, d) @ k.transpose(1, 2) * self.scaling
        scores = scores.view(self.kv_heads, group, new, total)
        # Query i sits at absolute position total - new + i and sees keys up to itself,
        # and with a window only the last `window` of them (transformers' convention).
        pos_q = torch.arange(total - new, total, device=q.device).unsqueeze(1)
        pos_k = torch.arange(total, device=q.device).unsqueeze(0)
        blocked = pos_k > pos_q
        if self.window is not None:
            blocked = blocked | (pos_q - pos_k >= self.window)
        scores = scores.masked_fill(blocked, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        out = probs.view(self.kv_heads, group * new, total) @ v
        return out.view(heads, new, d).transpose(0, 1).reshape(new, heads * d)


class MLP(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        width, inner = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Linear(width, inner, bias=cfg.mlp_bias)
        self.up_proj = Linear(width, inner, bias=cfg.mlp_bias)
        self.down_proj = Linear(inner, width, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: Config, window: int | None) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, window)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        lengths: list[int],
        caches: list[Cache],
        layer: int,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, lengths, caches, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    """The ``model.`` part of a checkpoint: embeddings, layers, final norm."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, w) for w in cfg.windows)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """A Llama-family decoder with the Decoder protocol of ``mesh.runtime.generate``."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = cfg.vocab_size
        self.max_positions = cfg.max_positions
        self.model = Body(cfg)
        self.lm_head = (
            None if cfg.tie_word_embeddings else Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        )
        # A plain float32 tensor, not a buffer: it stays out of the state dict (and so out
        # of the model_root) and keeps float32 when the module is cast to a half dtype.
        self._inv_freq = torch.tensor(cfg.inv_freq, dtype=torch.float32)

    def new_cache(self) -> Cache:
        return []

    def hidden(self, ids: list[torch.Tensor], caches: list[Cache]) -> list[torch.Tensor]:
        """Final hidden states (after ``model.norm``) of new tokens, one ``[T_i, H]`` per sequence.

        Args:
            ids: the new token ids of each sequence (1-D).
            caches: one cache per sequence; extended in place.
        """
        lengths = [int(t.shape[0]) for t in ids]
        positions = torch.cat(
            [
                torch.arange(self._past(c), self._past(c) + n, device=t.device)
                for t, c, n in zip(ids, caches, lengths, strict=True)
            ]
        )
        x = self.model.embed_tokens(torch.cat(ids))
        rope = self._rope(positions, x.dtype)
        for layer, block in enumerate(self.model.layers):
            x = block(x, rope, lengths, caches, layer)
        return list(self.model.norm(x).split(lengths))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of hidden states ``[M, H]`` (through the embeddings when tied)."""
        head = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return ops.linear(hidden, head)

    def _rope(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin ``[N, 1, d]`` per token, computed in float32 then cast (as transformers)."""
        freqs = positions.float().unsqueeze(1) * self._inv_freq.to(positions.device).unsqueeze(0)
        emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    @staticmethod
    def _past(cache: Cache) -> int:
        return int(cache[0][0].shape[1]) if cache else 0


def build(**config: Any) -> LlamaForCausalLM:
    """The decoder a Hugging Face config describes. Raises ValueError when unsupported."""
    return LlamaForCausalLM(parse_config(config))


def load_state(model: LlamaForCausalLM, tensors: dict[str, torch.Tensor]) -> None:
    """Load a checkpoint's tensors, adopting them as they are stored (no copy).

    ``rotary_emb.inv_freq`` tensors, which some older Llama 2 conversions saved, are
    derived from the config and skipped (as transformers does). A tied model whose
    checkpoint still carries ``lm_head.weight`` must carry the embeddings' very values.

    Raises:
        ValueError: a tied head differs from the embeddings.
        RuntimeError: names or shapes do not fit (from ``load_state_dict``).
    """
    state = {k: v for k, v in tensors.items() if not k.endswith(".rotary_emb.inv_freq")}
    if model.lm_head is None and "lm_head.weight" in state:
        head = state.pop("lm_head.weight")
        embed = state.get("model.embed_tokens.weight")
        if embed is None or not torch.equal(head, embed):
            raise ValueError("config ties the head to the embeddings, but lm_head.weight differs")
    # assign=True adopts the loaded tensors (and their dtype) instead of copying into the
    # uninitialised float32 parameters, whose pages are then never touched: an 8B model
    # stored in bfloat16 takes 16 GB of memory at load, not 16 + 32.
    model.load_state_dict(state, strict=True, assign=True)


def init_weights(model: LlamaForCausalLM, generator: torch.Generator) -> None:
    """Seeded init: normal(0, 0.02) for matrices, 1 for norms, 0 for biases; CPU, name order."""
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
