"""The model as trained: a Qwen3-style GQA decoder whose sparse layers carry an MSA index branch.

Job: forward pass over packed batches with arbitrary visibility (parallel layout: shared prefix, per-file
block-diagonal masks, live tail seeing all; or plain causal), MSA top-k block routing from the index branch, and
the index-branch KL loss against the group-mean of the main branch's softmax (reference/msa.md §1.4).
Parameter names equal Hugging Face Qwen3's plus the index-branch names of the shared contract, so state_dict()
is the checkpoint.  Not its job: serving (inference/model.py) or batching (batches.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int = 16384
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 10
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    rope_theta: float = 100000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    index_dim: int = 64
    block_size: int = 128
    topk_blocks: int = 16
    sparse_layers: list[int] = field(default_factory=lambda: [0, 0] + [1] * 8)

    def to_dict(self) -> dict:
        return asdict(self)


def rope_cos_sin(positions: torch.Tensor, dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NeoX rotary tables [B, T, dim] for integer positions [B, T]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    angles = positions.to(torch.float32)[..., None] * inv_freq
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, d]; rotates the first cos.shape[-1] dims NeoX-style (rotate_half), leaves the rest."""
    rot = cos.shape[-1]
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    half = rot // 2
    rotated = torch.cat([-x_rot[..., half:], x_rot[..., :half]], dim=-1)
    cos, sin = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)
    return torch.cat([x_rot * cos + rotated * sin, x_pass], dim=-1)


class RMSNorm(nn.Module):
    """Qwen3 RMSNorm (x * w), or Gemma RMSNorm (x * (1 + w)) for the index branch."""

    def __init__(self, dim: int, eps: float, gemma: bool = False):
        super().__init__()
        self.gemma = gemma
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim) if gemma else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        weight = (1.0 + self.weight.float()) if self.gemma else self.weight.float()
        return (weight * x).to(dtype)


class Routing:
    """Per-batch attention facts shared by all layers: visibility, rotary tables, the mode, KL rows."""

    def __init__(self, visible: torch.Tensor, cos, sin, idx_cos, idx_sin, sparse: bool, kl_rows: torch.Tensor | None):
        self.visible = visible  # [B, T, T] bool, True = key j visible to query i
        self.cos, self.sin, self.idx_cos, self.idx_sin = cos, sin, idx_cos, idx_sin
        self.sparse = sparse
        self.kl_rows = kl_rows  # [B, R] query rows on which the index KL is computed, or None


def select_blocks(scores: torch.Tensor, visible: torch.Tensor, block: int, topk: int) -> torch.Tensor:
    """MSA block choice. scores [B, G, T, T] index scores; visible [B, T, T].

    Returns [B, G, T, nblocks] bool: the query's local block plus the top-(topk-1) earlier blocks by max score over
    their visible tokens (all earlier visible blocks when there are fewer); ties go to the lower block id.
    """
    B, G, T, _ = scores.shape
    nb = -(-T // block)
    masked = scores.float().masked_fill(~visible[:, None], float("-inf"))
    masked = F.pad(masked, (0, nb * block - T), value=float("-inf"))
    block_max = masked.view(B, G, T, nb, block).amax(-1)
    local = torch.arange(T, device=scores.device) // block
    block_ids = torch.arange(nb, device=scores.device)
    history = block_ids[None, :] < local[:, None]  # [T, nb]
    block_max = block_max.masked_fill(~history, float("-inf"))
    valid = torch.isfinite(block_max)
    tie_break = block_ids.float() * 1e-4
    k = min(topk - 1, nb)
    top = torch.topk(torch.where(valid, block_max - tie_break, torch.full_like(block_max, float("-inf"))), k, dim=-1)
    chosen = torch.zeros_like(valid)
    chosen.scatter_(-1, top.indices, True)
    chosen &= valid
    chosen |= (block_ids[None, :] == local[:, None])[None, None]
    return chosen


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, sparse: bool):
        super().__init__()
        self.cfg = cfg
        self.is_sparse = sparse
        H, G, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, H * d, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, G * d, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, G * d, bias=False)
        self.o_proj = nn.Linear(H * d, cfg.hidden_size, bias=False)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps)
        if sparse:
            self.index_q_proj = nn.Linear(cfg.hidden_size, G * cfg.index_dim, bias=False)
            self.index_k_proj = nn.Linear(cfg.hidden_size, cfg.index_dim, bias=False)
            self.index_q_norm = RMSNorm(cfg.index_dim, cfg.rms_norm_eps, gemma=True)
            self.index_k_norm = RMSNorm(cfg.index_dim, cfg.rms_norm_eps, gemma=True)

    def index_qk(self, x: torch.Tensor, r: Routing) -> tuple[torch.Tensor, torch.Tensor]:
        """Index queries [B, G, T, d_idx] and keys [B, 1, T, d_idx] from stopgrad(x), normed and roped."""
        B, T, _ = x.shape
        x = x.detach()
        qi = self.index_q_norm(self.index_q_proj(x).view(B, T, -1, self.cfg.index_dim)).transpose(1, 2)
        ki = self.index_k_norm(self.index_k_proj(x).view(B, T, 1, self.cfg.index_dim)).transpose(1, 2)
        return apply_rope(qi, r.idx_cos, r.idx_sin), apply_rope(ki, r.idx_cos, r.idx_sin)

    def forward(self, x: torch.Tensor, r: Routing) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.cfg
        B, T, _ = x.shape
        H, G, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = self.q_norm(self.q_proj(x).view(B, T, H, d)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, G, d)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, G, d).transpose(1, 2)
        q, k = apply_rope(q, r.cos, r.sin), apply_rope(k, r.cos, r.sin)
        support = r.visible[:, None]  # [B, 1, T, T]
        kl = None
        if self.is_sparse:
            qi, ki = self.index_qk(x, r)
            if r.sparse:
                with torch.no_grad():
                    chosen = select_blocks(qi @ ki.transpose(-1, -2), r.visible, cfg.block_size, cfg.topk_blocks)
                support = r.visible[:, None] & chosen.repeat_interleave(cfg.block_size, dim=-1)[..., :T]  # [B, G, T, T]
            if r.kl_rows is not None:
                kl = self.index_kl(q, k, qi, ki, support, r.kl_rows)
        out = grouped_attention(q, k, v, support)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, H * d)), kl

    def index_kl(self, q, k, qi, ki, support, rows) -> torch.Tensor:
        """KL(teacher || index) on the given query rows over the support the main branch attended to."""
        cfg = self.cfg
        B, H, T, d = q.shape
        G = cfg.num_key_value_heads
        gather = rows[:, None, :, None]
        rows_support = torch.gather(support.expand(B, support.shape[1], T, T), 2,
                                    rows[:, None, :, None].expand(B, support.shape[1], rows.shape[1], T))
        with torch.no_grad():
            q_rows = torch.gather(q, 2, gather.expand(B, H, rows.shape[1], d)).float()
            k_rep = k.float().repeat_interleave(H // G, dim=1)
            logits = (q_rows @ k_rep.transpose(-1, -2)) / math.sqrt(d)
            sup_h = rows_support.repeat_interleave(H // rows_support.shape[1], dim=1) if rows_support.shape[1] > 1 \
                else rows_support.expand(B, H, -1, -1)
            teacher = torch.softmax(logits.masked_fill(~sup_h, float("-inf")), dim=-1)
            teacher = teacher.view(B, G, H // G, -1, T).mean(2)  # [B, G, R, T]
        qi_rows = torch.gather(qi, 2, rows[:, None, :, None].expand(B, G, rows.shape[1], cfg.index_dim)).float()
        student_logits = (qi_rows @ ki.float().transpose(-1, -2)) / math.sqrt(cfg.index_dim)
        sup_g = rows_support.expand(B, G, -1, -1)
        log_student = torch.log_softmax(student_logits.masked_fill(~sup_g, float("-inf")), dim=-1)
        log_teacher = torch.log(teacher.clamp_min(1e-30))
        kl = torch.where(sup_g, teacher * (log_teacher - log_student), torch.zeros_like(teacher)).sum(-1)
        return kl.mean()


def grouped_attention(q, k, v, support: torch.Tensor) -> torch.Tensor:
    """Softmax GQA attention of q [B, H, T, d] over k/v [B, G, T, d] where support [B, 1 or G, T, T] is True.

    Query heads are folded per KV group into the batch so one [T, T] mask serves a group's heads (memory-efficient
    SDPA kernel on CUDA, math kernel on CPU)."""
    B, H, T, d = q.shape
    G = k.shape[1]
    per = H // G
    qg = q.reshape(B * G, per, T, d)
    kg = k.reshape(B * G, 1, T, d).expand(B * G, per, T, d).contiguous()
    vg = v.reshape(B * G, 1, T, d).expand(B * G, per, T, d).contiguous()
    mask = support.expand(B, G, T, T).reshape(B * G, 1, T, T)
    out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=mask)
    return out.reshape(B, H, T, d)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, sparse: bool):
        super().__init__()
        self.self_attn = Attention(cfg, sparse)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, r: Routing):
        attn, kl = self.self_attn(self.input_layernorm(x), r)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), kl


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, bool(s)) for s in cfg.sparse_layers)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class MSAForTraining(nn.Module):
    """Decoder with tied embeddings. forward() returns logits [B, T, V] and the mean index KL (or None)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert len(cfg.sparse_layers) == cfg.num_hidden_layers
        self.cfg = cfg
        self.model = Backbone(cfg)
        self._init_weights()

    def _init_weights(self):
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2:
                scale = std / math.sqrt(2 * self.cfg.num_hidden_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else std
                nn.init.normal_(p, std=scale)

    def routing(self, position_ids, visible, sparse: bool, kl_rows=None) -> Routing:
        cfg = self.cfg
        cos, sin = rope_cos_sin(position_ids, cfg.head_dim, cfg.rope_theta)
        icos, isin = rope_cos_sin(position_ids, cfg.index_dim // 2, cfg.rope_theta)
        return Routing(visible, cos, sin, icos, isin, sparse, kl_rows)

    def forward(self, input_ids, position_ids, visible, sparse: bool = False, kl_rows=None):
        r = self.routing(position_ids, visible, sparse, kl_rows)
        x = self.model.embed_tokens(input_ids)
        kls = []
        for layer in self.model.layers:
            x, kl = layer(x, r)
            if kl is not None:
                kls.append(kl)
        x = self.model.norm(x)
        logits = x @ self.model.embed_tokens.weight.t()
        return logits, (torch.stack(kls).mean() if kls else None)


def causal_visible(T: int, batch: int = 1, device=None) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()[None].expand(batch, T, T)
