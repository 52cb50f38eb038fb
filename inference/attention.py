"""Attention of new tokens over (a) themselves, causally and densely, and (b) repository pages, dense or MSA-sparse.

The repository part goes through the MSA ops (index_block_scores / summary_block_scores, topk_blocks,
sparse_decode) of `kernels.ops`, which runs Triton on CUDA tensors and the pure-torch reference on CPU
(override: kernels.ops.use_backend or MSA_KERNELS). The two parts are merged
by log-sum-exp. The repository pages are seen as history blocks 0..n-1 of a virtual sequence whose local block
n is the always-empty page 0: the tail itself plays the local block and is attended outside the kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from inference.kv_cache import PAGE, PagePool
from kernels import ops as _ops
from kernels import reference as ref

_MAX_SCORE_ELEMS = 1 << 26  # fp32 score elements materialised at once by attend_dense


@dataclass
class RepoView:
    """The repository pages one request reads: physical ids in logical order, plus derived tables."""

    pages: torch.Tensor  # [n] int64 physical page ids
    block_table: torch.Tensor  # [n + 1] int32, last entry = page 0 (the tail's virtual local block)
    valid: torch.Tensor  # [n * PAGE] bool: slot holds a token
    n_tokens: int

    @classmethod
    def build(cls, pool: PagePool, pages: list[int]) -> "RepoView":
        dev = pool.device
        ids = torch.tensor(pages, dtype=torch.int64, device=dev)
        table = torch.cat([ids, torch.zeros(1, dtype=torch.int64, device=dev)]).to(torch.int32)
        lens = pool.page_lens[ids].long() if pages else torch.zeros(0, dtype=torch.int64, device=dev)
        valid = (torch.arange(PAGE, device=dev)[None, :] < lens[:, None]).flatten()
        return cls(ids, table, valid, int(lens.sum()))

    @property
    def n_blocks(self) -> int:
        return self.pages.numel()

    def gather(self, cache: torch.Tensor) -> torch.Tensor:
        """All repository tokens of one layer's k or v cache, contiguous: [Hkv, n_tokens, d]."""
        x = cache[self.pages]  # (n, Hkv, PAGE, d)
        x = x.transpose(0, 1).reshape(x.shape[1], -1, x.shape[-1])  # (Hkv, n*PAGE, d)
        return x[:, self.valid]


def attend_dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal_start: int | None = None,
                 scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, Hq, d] over k, v [Hkv, S, d]. With causal_start c, query t sees keys j <= c + t; otherwise all.
    Returns fp32 out [T, Hq, d] and natural-log lse [T, Hq] (-inf, out 0 where nothing is visible)."""
    T, Hq, d = q.shape
    Hkv, S, _ = k.shape
    G = Hq // Hkv
    scale = d**-0.5 if scale is None else scale
    kf, vf = k.float(), v.float()
    qg = q.float().view(T, Hkv, G, d).permute(1, 2, 0, 3)  # (Hkv, G, T, d)
    rows = max(1, _MAX_SCORE_ELEMS // max(1, Hq * S))
    outs, lses = [], []
    for r in range(0, T, rows):
        qc = qg[:, :, r : r + rows]
        s = torch.einsum("hgtd,hsd->hgts", qc, kf) * scale  # (Hkv, G, t, S)
        if causal_start is not None:
            t_idx = torch.arange(r, r + qc.shape[2], device=q.device)
            mask = torch.arange(S, device=q.device)[None, :] > (causal_start + t_idx)[:, None]
            s = s.masked_fill(mask, float("-inf"))
        m = s.amax(-1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        p = torch.exp(s - m)
        den = p.sum(-1)
        o = torch.einsum("hgts,hsd->hgtd", p, vf) / den.clamp_min(1e-30)[..., None]
        lse = torch.where(den > 0, m.squeeze(-1) + torch.log(den.clamp_min(1e-30)), torch.full_like(den, float("-inf")))
        outs.append(o)
        lses.append(lse)
    out = torch.cat(outs, dim=2).permute(2, 0, 1, 3).reshape(T, Hq, d)
    lse = torch.cat(lses, dim=2).permute(2, 0, 1).reshape(T, Hq)
    return out, lse


@dataclass
class SelectionStats:
    steps: int = 0
    blocks: int = 0  # selected repository blocks, summed over sparse layers and groups
    groups: int = 0  # (sparse layer, group) pairs counted

    @property
    def mean_blocks(self) -> float:
        return self.blocks / self.groups if self.groups else 0.0


@dataclass
class RepoAttention:
    """How the new tokens read the repository: dense, or MSA top-k per GQA group on sparse layers."""

    pool: PagePool
    view: RepoView
    sparse: bool
    top_k: int = 16
    summary_mode: str = "minmax"
    stats: SelectionStats = field(default_factory=SelectionStats)

    def __call__(self, layer: int, q: torch.Tensor, index_q: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """q [T, Hq, d] -> (out fp32 [T, Hq, d], lse [T, Hq]) over the repository pages."""
        pool, view = self.pool, self.view
        T, Hq, d = q.shape
        if view.n_blocks == 0:
            return torch.zeros(T, Hq, d, device=q.device), torch.full((T, Hq), float("-inf"), device=q.device)
        if not (self.sparse and pool.cfg.sparse_layers[layer]):
            return attend_dense(q, view.gather(pool.k[layer]), view.gather(pool.v[layer]))
        positions = torch.full((T,), view.n_blocks * PAGE, dtype=torch.int32, device=q.device)
        rows, seq_lens = ref.prefill_rows(view.block_table, positions)
        if index_q is not None and layer in pool.index_slot:
            scores = _ops.index_block_scores(index_q, pool.index_k[pool.index_slot[layer]], rows, seq_lens,
                                             page_lens=pool.page_lens)
        else:
            scores = _ops.summary_block_scores(q, pool.kmin[layer], pool.kmax[layer], rows, seq_lens,
                                               kmean=pool.kmean[layer], mode=self.summary_mode, page_lens=pool.page_lens)
        selected = _ops.topk_blocks(scores, seq_lens, self.top_k)
        selected = selected.masked_fill(selected == view.n_blocks, -1)  # the virtual local block is the tail
        self.stats.blocks += int((selected >= 0).sum())
        self.stats.groups += selected.shape[0] * selected.shape[1]
        out, lse = _ops.sparse_decode(q, pool.k[layer], pool.v[layer], rows, seq_lens, selected,
                                      page_lens=pool.page_lens, return_lse=True)
        return out.float(), lse


def merge(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Merge partial attentions over disjoint key sets -> out fp32 [T, Hq, d]."""
    if len(parts) == 1:
        return parts[0][0]
    outs = torch.stack([p[0] for p in parts])
    lses = torch.stack([p[1] for p in parts])
    return ref.merge_partials(outs, lses)[0]
