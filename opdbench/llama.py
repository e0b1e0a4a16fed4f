"""Llama in plain torch: the tiny tier's fast path, numerically the Hugging Face architecture.

At the zoo's size (width 48, 4 layers, 151 tokens) transformers' `LlamaForCausalLM` spends much
of a step on per-call overhead (mask builders, cache objects), and importing its modeling code
takes ~6 s (it pulls in sklearn, scipy and torch._dynamo). This module is the same arithmetic, in
the same order, in fewer ops (one fused QKV matmul, one fused gate/up matmul, RoPE from a table),
and loads a `save_pretrained` folder with `safetensors` alone, under the same parameter names.
`tests/test_llama.py` checks tokens, logits and gradients against transformers.

What a forward pass attends to is its context: `Prompts` (a prefill of distinct prompts, which
keeps their keys and values), `Prefix` (rows continuing those prompts: the learner's and teachers'
passes, each prompt computed once however many samples it has) or `Cache` (decoding).

Covered: `model_type: llama`, default RoPE, SiLU MLP, no biases, grouped-query attention, tied or
untied embeddings. Anything else (Qwen, rope scaling, ...) loads through transformers instead
(`opdbench.zoo.load_model`), and the code that drives models accepts either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Shape:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None


def shape_of(config: dict) -> Shape | None:
    """The Shape of a Hugging Face config (as a dict), or None when this module does not cover it."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    covered = (config.get("model_type") == "llama" and rope_type == "default"
               and config.get("hidden_act", "silu") == "silu" and not config.get("attention_bias", False)
               and not config.get("mlp_bias", False) and config.get("pretraining_tp", 1) == 1)
    if not covered:
        return None
    heads = config["num_attention_heads"]
    return Shape(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"], num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=heads, num_key_value_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        rope_theta=rope.get("rope_theta", config.get("rope_theta", 10000.0)),
        tie_word_embeddings=config.get("tie_word_embeddings", False),
        pad_token_id=config.get("pad_token_id"), bos_token_id=config.get("bos_token_id"),
        eos_token_id=config.get("eos_token_id"))


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(size)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # as transformers: normalize in float32 whatever the weights' dtype
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = s.num_attention_heads, s.num_key_value_heads, s.head_dim
        self.q_proj = nn.Linear(s.hidden_size, self.heads * s.head_dim, bias=False)
        self.k_proj = nn.Linear(s.hidden_size, self.kv_heads * s.head_dim, bias=False)
        self.v_proj = nn.Linear(s.hidden_size, self.kv_heads * s.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * s.head_dim, s.hidden_size, bias=False)

    def qkv_weight(self) -> torch.Tensor:
        return torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])


class MLP(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.gate_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.up_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.down_proj = nn.Linear(s.intermediate_size, s.hidden_size, bias=False)


class Layer(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.self_attn, self.mlp = Attention(s), MLP(s)
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)


class Body(nn.Module):  # named `model` in the parent, as in transformers, so parameter names match
    def __init__(self, s: Shape):
        super().__init__()
        self.embed_tokens = nn.Embedding(s.vocab_size, s.hidden_size, s.pad_token_id)  # pad's row gets no gradient, as in transformers
        self.layers = nn.ModuleList(Layer(s) for _ in range(s.num_hidden_layers))
        self.norm = RMSNorm(s.hidden_size, s.rms_norm_eps)


def attention(q, k, v, bias=None):
    """softmax(q k^T / sqrt(D) + bias) v, the softmax in float32 as in transformers; the bias
    broadcasts over heads."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias
    return scores.softmax(-1, dtype=torch.float32).to(q.dtype) @ v


class Prompts:
    """Prefill of G left-padded prompts (causal, padding masked); keeps each layer's keys and values."""

    def __init__(self, mask_G_P: torch.Tensor, dtype: torch.dtype):
        P = mask_G_P.shape[1]
        causal = torch.ones(P, P, dtype=torch.bool, device=mask_G_P.device).tril()
        self.bias = _bias(causal[None] & mask_G_P.bool()[:, None, :], dtype)[:, None]
        self.mask_G_P, self.dtype, self.kv = mask_G_P, dtype, []

    def attend(self, layer, q, k, v):
        self.kv.append((k, v))
        return attention(q, k, v, self.bias)


class Prefix:
    """B rows that continue G prompts (`source_B[b]` = row b's prompt): T new tokens per row attend
    to their prompt's keys and values (computed once per prompt, by `Prompts`) and causally to each
    other. Differentiable, so the learner shares its prompts too.

    (Measured and rejected: attending to each prompt's keys in one matmul for all its rows instead
    of a copy per row; the extra reshapes cost more than the copies at this size.)
    """

    def __init__(self, prompts: Prompts, source_B: torch.Tensor):
        self.kv, self.source_B, self.dtype = prompts.kv, source_B, prompts.dtype
        self.prompt_mask_B_P = prompts.mask_G_P.bool()[source_B]
        self.bias = None

    def attend(self, layer, q, k, v):
        if self.bias is None:  # the same for every layer
            T = q.shape[2]
            causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril().expand(len(q), T, T)
            self.bias = _bias(torch.cat([self.prompt_mask_B_P[:, None].expand(-1, T, -1), causal], 2), self.dtype)[:, None]
        pk, pv = self.kv[layer]
        return attention(q, torch.cat([pk[self.source_B], k], 2), torch.cat([pv[self.source_B], v], 2), self.bias)


class Cache:
    """Decoding, one token a step: per layer one preallocated buffer per row, its prompt's keys and
    values copied in first, then each new token written in place (no re-allocation per token)."""

    def __init__(self, prompts: Prompts, source_B: torch.Tensor, capacity: int):
        self.length = prompts.mask_G_P.shape[1]  # filled columns
        self.buffers = []
        for pk, pv in prompts.kv:
            k = pk.new_empty(len(source_B), pk.shape[1], self.length + capacity, pk.shape[3])
            v = torch.empty_like(k)
            k[:, :, :self.length], v[:, :, :self.length] = pk[source_B], pv[source_B]
            self.buffers.append((k, v))
        allowed = torch.ones(len(source_B), self.length + capacity, dtype=torch.bool, device=source_B.device)
        allowed[:, :self.length] = prompts.mask_G_P.bool()[source_B]
        self.bias = _bias(allowed, prompts.dtype)[:, None, None]  # a row's own tokens are all visible

    def attend(self, layer, q, k, v):  # one new token per row
        bk, bv = self.buffers[layer]
        end = self.length + 1
        bk[:, :, self.length:end], bv[:, :, self.length:end] = k, v
        if layer == len(self.buffers) - 1:
            self.length = end
        return attention(q, bk[:, :, :end], bv[:, :, :end], self.bias[..., :end])

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every row but these (rows that stopped no longer decode)."""
        self.buffers = [(k[rows], v[rows]) for k, v in self.buffers]
        self.bias = self.bias[rows]


def _bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask: 0 where allowed, the dtype's minimum elsewhere (finite, so a fully masked
    row, a left-padding query, softmaxes to uniform instead of NaN, as in transformers)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, torch.finfo(dtype).min)


class Llama(nn.Module):
    def __init__(self, shape: Shape):
        super().__init__()
        self.shape = shape
        self.model = Body(shape)
        self.lm_head = nn.Linear(shape.hidden_size, shape.vocab_size, bias=False)
        if shape.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        half = torch.arange(0, shape.head_dim, 2, dtype=torch.int64).float() / shape.head_dim
        self.register_buffer("inv_freq", 1.0 / (shape.rope_theta ** half), persistent=False)
        self._rope = (None, None)  # cos/sin tables by position, grown on demand

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> "Llama | None":
        """Load a `save_pretrained` folder, or None when its architecture is not covered here."""
        from safetensors.torch import load_file

        path = Path(path)
        shape = shape_of(json.loads((path / "config.json").read_text()))
        weights = sorted(path.glob("*.safetensors"))
        if shape is None or not weights:
            return None
        model = cls(shape)
        state = {}
        for file in weights:
            state.update(load_file(file))
        if shape.tie_word_embeddings:  # one tensor under two names, saved once
            state["lm_head.weight"] = state["model.embed_tokens.weight"]
        model.load_state_dict(state)
        return model.to(dtype).eval()

    @classmethod
    def from_hf(cls, model) -> "Llama | None":
        """A copy of a transformers model (e.g. LlamaForCausalLM), or None when not covered."""
        shape = shape_of(model.config.to_dict())
        if shape is None:
            return None
        native = cls(shape).to(model.dtype)
        native.load_state_dict(model.state_dict())
        return native.train(model.training)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin at each position (B × T × head_dim), as transformers computes them (float32)."""
        cos, sin = self._rope
        need = int(positions.max()) + 1
        if cos is None or cos.shape[0] < need or cos.device != positions.device:
            table = max(need, 2 * (0 if cos is None else cos.shape[0]), 128)
            freqs = torch.arange(table, device=positions.device, dtype=torch.float32)[:, None] * self.inv_freq.float()
            emb = torch.cat([freqs, freqs], -1)
            cos, sin = emb.cos(), emb.sin()
            self._rope = (cos, sin)
        dtype = self.lm_head.weight.dtype
        return cos[positions].to(dtype)[:, None], sin[positions].to(dtype)[:, None]

    def forward(self, ids_B_T: torch.Tensor, positions_B_T: torch.Tensor, context) -> torch.Tensor:
        """Last hidden states (B × T × hidden) of T new tokens per row; `context` (Prompts, Prefix
        or Cache) says what they attend to."""
        s = self.shape
        B, T = ids_B_T.shape
        H, KVH, D = s.num_attention_heads, s.num_key_value_heads, s.head_dim
        x = self.model.embed_tokens(ids_B_T)
        cos, sin = self.rope(positions_B_T)
        for i, layer in enumerate(self.model.layers):
            a = layer.self_attn
            qkv = F.linear(layer.input_layernorm(x), a.qkv_weight()).view(B, T, H + 2 * KVH, D).transpose(1, 2)
            qk = qkv[:, :H + KVH]
            qk = qk * cos + _rotate_half(qk) * sin
            q, k, v = qk[:, :H], qk[:, H:], qkv[:, H + KVH:]
            if KVH != H:  # grouped-query attention: each key/value head serves H / KVH query heads
                k, v = k.repeat_interleave(H // KVH, 1), v.repeat_interleave(H // KVH, 1)
            out = context.attend(i, q, k, v)
            x = x + a.o_proj(out.transpose(1, 2).reshape(B, T, H * D))
            m = layer.mlp
            gate, up = F.linear(layer.post_attention_layernorm(x),
                                torch.cat([m.gate_proj.weight, m.up_proj.weight])).chunk(2, -1)
            x = x + m.down_proj(F.silu(gate) * up)
        return self.model.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def prefill(self, ids_G_P: torch.Tensor, mask_G_P: torch.Tensor) -> tuple[torch.Tensor, Prompts]:
        """Left-padded prompts → (the last position's hidden state, G × hidden; their Prompts,
        holding every layer's keys and values for a Prefix or a Cache)."""
        positions = (mask_G_P.cumsum(-1) - 1).clamp(min=0)
        prompts = Prompts(mask_G_P, self.lm_head.weight.dtype)
        return self(ids_G_P, positions, prompts)[:, -1], prompts


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, -1)
    return torch.cat([-x2, x1], -1)
