"""The decoder-only transformer (Llama / Qwen2 / Qwen3, optional MSA index branch), gpt-fast style.

One sequence at a time, explicit integer positions. Attention itself is delegated to an `attend`
callback per layer, so the same weights serve segment prefill, the live tail and reference forwards;
the repository KV cache and the MSA selection live elsewhere (inference/kv_cache.py, attention.py).
Module names mirror Hugging Face checkpoints so state dicts load without renaming.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from inference import rope
from inference.config import ModelConfig


class Attend(Protocol):
    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 index_q: torch.Tensor | None, index_k: torch.Tensor | None) -> torch.Tensor: ...


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, *, gemma: bool = False):
        super().__init__()
        self.eps, self.gemma = eps, gemma
        self.weight = nn.Parameter(torch.zeros(dim) if gemma else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.gemma:  # Gemma RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w), in fp32
            return (x * (1.0 + self.weight.float())).to(dtype)
        return self.weight * x.to(dtype)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, sparse: bool):
        super().__init__()
        hq, hkv, d = cfg.num_q_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, hq * d, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(hq * d, cfg.hidden_size, bias=cfg.o_bias)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(d, cfg.rms_eps)
            self.k_norm = RMSNorm(d, cfg.rms_eps)
        self.has_index = cfg.has_index_branch and sparse
        if self.has_index:
            self.index_q_proj = nn.Linear(cfg.hidden_size, hkv * cfg.index_dim, bias=False)
            self.index_k_proj = nn.Linear(cfg.hidden_size, cfg.index_dim, bias=False)
            self.index_q_norm = RMSNorm(cfg.index_dim, cfg.rms_eps, gemma=True)
            self.index_k_norm = RMSNorm(cfg.index_dim, cfg.rms_eps, gemma=True)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, sparse: bool):
        super().__init__()
        self.self_attn = SelfAttention(cfg, sparse)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_eps)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, cfg.sparse_layers[i]) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        freq, factor = rope.inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        self.register_buffer("rope_freq", freq, persistent=False)
        self.rope_factor = factor
        if cfg.has_index_branch:
            index_freq, _ = rope.inv_freq(cfg.index_rope_dim, cfg.rope_theta)
            self.register_buffer("index_rope_freq", index_freq, persistent=False)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, attend: Attend, *, logits: str = "all",
                last_query_only: bool = False):
        """tokens, positions: [T] int64. logits: "all" -> [T, V] fp32, "last" -> [1, V], "none" -> None.
        last_query_only (with logits "last"): the last layer computes K/V of every token but attention and MLP of
        the last token only (all its output needs), so `attend` then gets q, index_q of that token alone."""
        x = self.embed_tokens(tokens)  # (T, hidden)
        dtype = x.dtype
        cos, sin = rope.cos_sin(positions, self.rope_freq, self.rope_factor, dtype)
        if self.cfg.has_index_branch:
            icos, isin = rope.cos_sin(positions, self.index_rope_freq, 1.0, dtype)
        T, d = tokens.shape[0], self.cfg.head_dim
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(T, -1, d)  # (T, Hq, d)
            k = attn.k_proj(h).view(T, -1, d)  # (T, Hkv, d)
            v = attn.v_proj(h).view(T, -1, d)
            if self.cfg.qk_norm:
                q, k = attn.q_norm(q), attn.k_norm(k)
            q, k = rope.rotate(q, cos, sin), rope.rotate(k, cos, sin)
            index_q = index_k = None
            if attn.has_index:
                index_q = attn.index_q_norm(attn.index_q_proj(h).view(T, -1, self.cfg.index_dim))  # (T, Hkv, d_idx)
                index_k = attn.index_k_norm(attn.index_k_proj(h).view(T, 1, self.cfg.index_dim))  # (T, 1, d_idx)
                index_q, index_k = rope.rotate(index_q, icos, isin), rope.rotate(index_k, icos, isin)[:, 0]
            if last_query_only and logits == "last" and i == len(self.layers) - 1:
                q, x = q[-1:], x[-1:]
                index_q = None if index_q is None else index_q[-1:]
            out = attend(i, q, k, v, index_q, index_k)  # (T, Hq, d), or (1, Hq, d) for the last query only
            x = x + attn.o_proj(out.reshape(x.shape[0], -1).to(dtype))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        if logits == "none":
            return None
        if logits == "last":
            x = x[-1:]
        return self.lm_head(self.norm(x)).float()


def causal_attend(layer: int, q, k, v, index_q=None, index_k=None) -> torch.Tensor:
    """Plain causal GQA attention over the given tokens only (reference forwards and tests)."""
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True)
    return out.transpose(0, 1)  # (T, Hq, d)


