"""Repository attention when the repository's pages are spread over ranks (context parallel), exact w.r.t. one rank.

Each rank holds some segments. Their blocks carry global block ids: the ids one rank would give them (the shared
prefix first, then the files in sync order), so every rank reads its own blocks in ascending global order.
Per layer:
- dense (dense mode, or a dense layer of the model): each rank attends to all its own tokens;
- sparse (MSA): each rank scores its own blocks and keeps its local top-(k-1) candidates (ties to the lower id);
  ranks all-gather the candidates' (score, global id) in one collective; every rank picks the same global
  top-(k-1) from them, ordered by score, then lower global id (the one-rank rule), and attends to the picked blocks it owns.
The partial (out, lse) of every rank is all-gathered and merged by log-sum-exp in rank order on every rank, so all
ranks continue with bit-identical hidden states. The live tail's own attention is added to rank 0's part only.
These steps are module functions, shared with the fixed-shape decode step (inference/cp_decode_graph.py).
Non-job: who owns which segment (inference/cp_engine.py), the collectives themselves (inference/distributed.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from inference.attention import RepoAttention, RepoView, SelectionStats, attend_dense, shared_block_scores
from inference.distributed import Comm
from inference.kv_cache import PAGE, PagePool
from kernels import ops as _ops
from kernels import reference as ref

NEG_INF = float("-inf")


@dataclass
class ShardView:
    """This rank's share of one request's repository view."""

    view: RepoView  # local pages, ascending global id
    global_ids: torch.Tensor  # [n_local] int64
    n_global: int  # blocks in the whole view, all ranks together


@dataclass
class CommTimer:
    """Wall time spent inside collectives (only measured when `enabled`: it synchronizes the device)."""

    enabled: bool = False
    seconds: float = 0.0
    calls: int = 0


@dataclass
class ShardedRepoAttention:
    comm: Comm
    pool: PagePool
    shard: ShardView
    sparse: bool
    top_k: int = 16
    summary_mode: str = "minmax"
    use_kernels: bool | None = None  # None: kernels.ops on CUDA, batched torch on CPU
    stats: SelectionStats = field(default_factory=SelectionStats)
    timer: CommTimer = field(default_factory=CommTimer)

    def __post_init__(self):
        self.local = RepoAttention(self.pool, self.shard.view, sparse=self.sparse, top_k=self.top_k,
                                   summary_mode=self.summary_mode)

    @property
    def view(self) -> RepoView:
        return self.shard.view

    def dense_layer(self, layer: int) -> bool:
        return self.local.dense_layer(layer)

    # ---- this rank's part ------------------------------------------------------------------------------
    def partial(self, layer: int, q: torch.Tensor, index_q: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(out fp32 [T, Hq, d], lse [T, Hq]) of q over the blocks of this rank that the layer reads."""
        T, Hq, d = q.shape
        view = self.shard.view
        if self.dense_layer(layer) or self.shard.n_global + 1 <= self.top_k:
            if view.n_blocks == 0:
                return _empty(q)
            if not self.dense_layer(layer):  # every block is selected: count them like one rank would
                self._count(T, self.shard.n_global)
            if T <= 4 and (q.is_cuda if self.use_kernels is None else self.use_kernels):  # decode: read pages in place
                positions = torch.full((T,), view.n_blocks * PAGE, dtype=torch.int32, device=q.device)
                rows, seq_lens = ref.prefill_rows(view.block_table, positions)
                out, lse = _ops.dense_decode(q, self.pool.k[layer], self.pool.v[layer], rows, seq_lens,
                                             page_lens=self.pool.page_lens, return_lse=True)
                return out.float(), lse
            return attend_dense(q, view.gather(self.pool.k[layer]), view.gather(self.pool.v[layer]))
        selected = self._select(layer, q, index_q)  # [T, Hkv, k-1] local ids, -1 = not mine / none
        if view.n_blocks == 0:
            return _empty(q)
        return self._attend_selected(layer, q, selected)

    def _scores(self, layer, q, index_q) -> torch.Tensor:
        pool, view = self.pool, self.shard.view
        use_index = index_q is not None and layer in pool.index_slot
        if not (q.is_cuda if self.use_kernels is None else self.use_kernels):
            return shared_block_scores(q, index_q if use_index else None, pool, layer, view, self.summary_mode)
        positions = torch.full((q.shape[0],), view.n_blocks * PAGE, dtype=torch.int32, device=q.device)
        rows, seq_lens = ref.prefill_rows(view.block_table, positions)
        if use_index:
            scores = _ops.index_block_scores(index_q, pool.index_k[pool.index_slot[layer]], rows, seq_lens,
                                             page_lens=pool.page_lens)
        else:
            scores = _ops.summary_block_scores(q, pool.kmin[layer], pool.kmax[layer], rows, seq_lens,
                                               kmean=pool.kmean[layer], mode=self.summary_mode, page_lens=pool.page_lens)
        return scores[..., : view.n_blocks]

    def _select(self, layer, q, index_q) -> torch.Tensor:
        T, Hkv, k1 = q.shape[0], self.pool.cfg.num_kv_heads, self.top_k - 1
        view, gids = self.shard.view, self.shard.global_ids
        if view.n_blocks:
            scores = self._scores(layer, q, index_q)
        else:
            scores = torch.full((T, Hkv, 0), NEG_INF, device=q.device)
        picks = pick_global(self._gather(local_candidates(scores, gids, k1)), k1)
        self._count_tensor(T, (picks >= 0).sum())
        return local_selection(picks, gids) if view.n_blocks else picks

    def _attend_selected(self, layer, q, selected) -> tuple[torch.Tensor, torch.Tensor]:
        pool, view = self.pool, self.shard.view
        if q.is_cuda if self.use_kernels is None else self.use_kernels:
            positions = torch.full((q.shape[0],), view.n_blocks * PAGE, dtype=torch.int32, device=q.device)
            rows, seq_lens = ref.prefill_rows(view.block_table, positions)
            return attend_selected_pages(q, pool, layer, rows, seq_lens, selected)
        return attend_blocks(q, pool, layer, view, selected)

    # ---- across ranks ----------------------------------------------------------------------------------
    def combine(self, part: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Merge every rank's (out, lse) -> out fp32 [T, Hq, d], identical on every rank."""
        return merge_ranks(self._gather(pack_partial(*part)))

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.timer.enabled:
            return self.comm.all_gather(tensor)
        if tensor.is_cuda:
            torch.cuda.synchronize(tensor.device)
        t0 = time.perf_counter()
        out = self.comm.all_gather(tensor)
        if tensor.is_cuda:
            torch.cuda.synchronize(tensor.device)
        self.timer.seconds += time.perf_counter() - t0
        self.timer.calls += 1
        return out

    def _count(self, T: int, blocks_per_group: int) -> None:
        self.stats.blocks = self.stats.blocks + T * self.pool.cfg.num_kv_heads * blocks_per_group
        self.stats.groups += T * self.pool.cfg.num_kv_heads

    def _count_tensor(self, T: int, blocks) -> None:
        self.stats.blocks = self.stats.blocks + blocks  # stays on the device: no sync per layer
        self.stats.groups += T * self.pool.cfg.num_kv_heads


# ---- the steps shared by this general forward and the fixed-shape decode step (inference/cp_decode_graph.py) ----
def local_candidates(scores: torch.Tensor, gids: torch.Tensor, k1: int) -> torch.Tensor:
    """This rank's best k1 blocks per (query, group), packed for one all-gather: float64 [T, Hkv, k1, 2] holding
    (score, global id), (-inf, -1) where there are fewer. scores fp32 [T, Hkv, W] in local order (= ascending
    global order, so a stable sort breaks ties to the lower id), -inf for blocks never to pick; gids int64 [W]
    (entries at -inf scores, e.g. padding, are never read)."""
    T, Hkv, W = scores.shape
    best = torch.sort(scores.float(), dim=-1, descending=True, stable=True)
    m = min(k1, W)
    s = best.values[..., :m].double()
    ids = torch.where(torch.isneginf(s), -1.0, gids[best.indices[..., :m]].double())
    packed = torch.stack([s, ids], dim=-1)
    if m < k1:
        pad = torch.full((T, Hkv, k1 - m, 2), -1.0, dtype=torch.float64, device=scores.device)
        pad[..., 0] = NEG_INF  # no host-to-device copy: the step may be under CUDA graph capture
        packed = torch.cat([packed, pad], dim=2)
    return packed


def pick_global(gathered: torch.Tensor, k1: int) -> torch.Tensor:
    """Every rank's candidates [R, T, Hkv, k1, 2] -> the global picks int64 [T, Hkv, k1] (global ids, -1 = none):
    the k1 best by score, ties to the lower id (the one-rank rule); the same on every rank."""
    T, Hkv = gathered.shape[1:3]
    all_s = gathered[..., 0].permute(1, 2, 0, 3).reshape(T, Hkv, -1)
    all_id = gathered[..., 1].permute(1, 2, 0, 3).reshape(T, Hkv, -1).long()
    by_id = torch.sort(torch.where(all_id < 0, torch.iinfo(torch.int64).max, all_id), dim=-1, stable=True).indices
    all_s, all_id = all_s.gather(-1, by_id), all_id.gather(-1, by_id)
    order = torch.sort(all_s, dim=-1, descending=True, stable=True).indices[..., :k1]  # score, then lower id
    return all_id.gather(-1, order).masked_fill(torch.isneginf(all_s.gather(-1, order)), -1)


def local_selection(picks: torch.Tensor, gids: torch.Tensor) -> torch.Tensor:
    """Global picks -> this rank's local block ids [T, Hkv, k1] (-1 = picked block held by another rank). gids
    int64 [W] ascending (padding: int64 max)."""
    where = torch.searchsorted(gids, picks.clamp_min(0)).clamp_max(gids.numel() - 1)
    mine = (picks >= 0) & (gids[where] == picks)
    return torch.where(mine, where, torch.full_like(where, -1))


def attend_selected_pages(q, pool: PagePool, layer: int, rows, seq_lens, selected) -> tuple[torch.Tensor, torch.Tensor]:
    """(out fp32, lse) of q [T, Hq, d] over the local blocks `selected` [T, Hkv, k1] (-1 = none) through
    kernels.ops, reading the pages in place; rows [T, W] block table, seq_lens [T] = local blocks * PAGE + 1."""
    sel = torch.sort(selected, dim=-1, descending=True).values.to(torch.int32)  # valid entries first
    out, lse = _ops.sparse_decode(q, pool.k[layer], pool.v[layer], rows, seq_lens, sel, page_lens=pool.page_lens,
                                  return_lse=True)
    return out.float(), lse


def pack_partial(out: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """(out [T, Hq, d], lse [T, Hq]) -> fp32 [T, Hq, d + 1]: one all-gather carries both."""
    return torch.cat([out.float(), lse.float()[..., None]], dim=-1)


def merge_ranks(gathered: torch.Tensor) -> torch.Tensor:
    """Every rank's packed partial [R, T, Hq, d + 1] -> out fp32 [T, Hq, d], merged in rank order."""
    return ref.merge_partials(gathered[..., :-1], gathered[..., -1])[0]


def _empty(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    T, Hq, d = q.shape
    return torch.zeros(T, Hq, d, device=q.device), torch.full((T, Hq), NEG_INF, device=q.device)


def attend_blocks(q, pool: PagePool, layer: int, view: RepoView, selected: torch.Tensor):
    """Exact attention of q [T, Hq, d] over the tokens of the local blocks `selected` [T, Hkv, k] (-1 = none),
    per query and GQA group (batched torch: one gather of the chunk's union of blocks)."""
    T, Hq, d = q.shape
    Hkv = pool.cfg.num_kv_heads
    G = Hq // Hkv
    lens = pool.page_lens[view.pages].long()
    scale = d**-0.5
    step = max(1, 64 // G)
    outs, lses = [], []
    for r in range(0, T, step):
        sel = selected[r : r + step]
        union = torch.unique(sel[sel >= 0])
        if union.numel() == 0:
            o, lse = _empty(q[r : r + sel.shape[0]])
            outs.append(o)
            lses.append(lse)
            continue
        phys = view.pages[union]
        K = pool.k[layer][phys].float().transpose(0, 1).flatten(1, 2)  # (Hkv, u*PAGE, d)
        V = pool.v[layer][phys].float().transpose(0, 1).flatten(1, 2)
        member = (sel[..., None] == union[None, None, None, :]).any(2)  # (t, Hkv, u)
        slot_ok = (torch.arange(PAGE, device=q.device)[None, :] < lens[union][:, None]).flatten()
        visible = member.repeat_interleave(PAGE, dim=-1) & slot_ok
        qc = q[r : r + sel.shape[0]].float().view(-1, Hkv, G, d)
        s = torch.einsum("thgd,hsd->thgs", qc, K) * scale
        s = s.masked_fill(~visible[:, :, None, :], NEG_INF)
        m = s.amax(-1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        p = torch.exp(s - m)
        den = p.sum(-1)
        o = torch.einsum("thgs,hsd->thgd", p, V) / den.clamp_min(1e-30)[..., None]
        lse = torch.where(den > 0, m.squeeze(-1) + torch.log(den.clamp_min(1e-30)), torch.full_like(den, NEG_INF))
        outs.append(o.reshape(-1, Hq, d))
        lses.append(lse.reshape(-1, Hq))
    return torch.cat(outs), torch.cat(lses)
