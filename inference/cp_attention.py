"""Repository attention when the repository's pages are spread over ranks (context parallel), exact w.r.t. one rank.

Each rank holds some segments. Their blocks carry global block ids: the ids one rank would give them (the shared
prefix first, then the files in sync order), so every rank reads its own blocks in ascending global order.
Per layer:
- dense (dense mode, or a dense layer of the model): each rank attends to all its own tokens;
- sparse (MSA): each rank scores its own blocks and keeps its local top-(k-1) candidates as int64 keys that order
  (score descending, global id ascending); ranks all-gather the keys in one collective; a candidate is picked iff
  fewer than k-1 keys of all ranks are above it, which is the global top-(k-1) by score, then lower global id (the
  one-rank rule), the same on every rank; each rank attends to the picked blocks it owns.
The partial (out, lse) of every rank, and beside rank 0's the live tail's own (only rank 0 holds the tail), are
all-gathered and merged by log-sum-exp in rank order on every rank, so all ranks continue with bit-identical
hidden states. These steps are module functions, shared with the fixed-shape decode step
(inference/cp_decode_graph.py).
Non-job: who owns which segment (inference/cp_engine.py), the collectives themselves (inference/distributed.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from inference.attention import (SMALL_T, RepoAttention, RepoView, SelectionStats, attend_context,
                                 shared_block_scores)
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
        self._tables: dict = {}  # kernels path: per (T, device) the rows of one shared table, and the key low words

    def _kernels(self, q: torch.Tensor) -> bool:
        return q.is_cuda if self.use_kernels is None else self.use_kernels

    def _rows(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Kernels path, T queries that all see every local block: (rows [T, n + 1], a stride-0 view of the shared
        block table; seq_lens [T] = n * PAGE + 1; low words [n + 1] of the blocks' keys, 0 for the virtual local
        block n, whose score is -inf), built once per chunk size."""
        key = (q.shape[0], q.device)
        if key not in self._tables:
            view = self.shard.view
            positions = torch.full((q.shape[0],), view.n_blocks * PAGE, dtype=torch.int32, device=q.device)
            rows, seq_lens = ref.prefill_rows(view.block_table.to(q.device), positions)
            low = torch.zeros(view.n_blocks + 1, dtype=torch.int64, device=q.device)
            low[: view.n_blocks] = id_low_words(self.shard.global_ids.to(q.device))
            self._tables[key] = (rows, seq_lens, low)
        return self._tables[key]

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
            if not self.dense_layer(layer):  # every block is selected: count them like one rank would (all ranks)
                self._count(T, self.shard.n_global)
            if view.n_blocks == 0:
                return _empty(q)
            if not self._kernels(q):  # CPU: fp32 fused attention over a contiguous copy, as ranks score in fp32
                return attend_context(q, *view.contiguous(self.pool, layer))
            if T <= SMALL_T:  # decode: one row per query, pages read in place
                rows, seq_lens, _ = self._rows(q)
                out, lse = _ops.dense_decode(q, self.pool.k[layer], self.pool.v[layer], rows, seq_lens,
                                             page_lens=self.pool.page_lens, return_lse=True)
            else:  # a prompt: the queries' heads stacked into tiles over the one shared table, pages read in place
                positions = torch.full((T,), view.n_blocks * PAGE - 1, dtype=torch.int32, device=q.device)
                out, lse = _ops.dense_prefill(q, self.pool.k[layer], self.pool.v[layer],
                                              view.block_table[: view.n_blocks], positions,
                                              page_lens=self.pool.page_lens, return_lse=True)
            return out.float(), lse
        selected = self._select(layer, q, index_q)  # [T, Hkv, k-1] local ids, -1 = not mine / none
        if view.n_blocks == 0:
            return _empty(q)
        return self._attend_selected(layer, q, selected)

    def _scores(self, layer, q, index_q) -> torch.Tensor:
        """Block scores fp32: [T, Hkv, n] on CPU; [T, Hkv, n + 1] on the kernels path (the virtual local block n
        scores -inf), from one shared table."""
        pool, view = self.pool, self.shard.view
        use_index = index_q is not None and layer in pool.index_slot
        if not self._kernels(q):
            return shared_block_scores(q, index_q if use_index else None, pool, layer, view, self.summary_mode)
        rows, seq_lens, _ = self._rows(q)
        if use_index:
            return _ops.index_block_scores(index_q, pool.index_k[pool.index_slot[layer]], rows, seq_lens,
                                           page_lens=pool.page_lens)
        return _ops.summary_block_scores(q, pool.kmin[layer], pool.kmax[layer], rows, seq_lens,
                                         kmean=pool.kmean[layer], mode=self.summary_mode, page_lens=pool.page_lens)

    def _select(self, layer, q, index_q) -> torch.Tensor:
        T, Hkv, k1 = q.shape[0], self.pool.cfg.num_kv_heads, self.top_k - 1
        view, gids = self.shard.view, self.shard.global_ids
        if view.n_blocks and self._kernels(q):  # the one-rank top-k op, keys of its picks only
            rows, seq_lens, low = self._rows(q)
            scores = self._scores(layer, q, index_q)
            ids = _ops.topk_blocks(scores, seq_lens, self.top_k)[..., :k1]  # -1 pads
            keys = picked_keys(scores, low, ids)
        else:
            if view.n_blocks:
                scores = self._scores(layer, q, index_q)
            else:
                scores = torch.full((T, Hkv, 0), NEG_INF, device=q.device)
            keys, ids = local_candidates(scores, gids.to(q.device), k1)
        gathered = candidate_buffer(self.comm.world, keys.shape, keys.device)
        self._gather(keys, gathered[:-1])
        self._count_tensor(T, count_picks(gathered, k1))
        return torch.where(picked(gathered, keys, k1), ids, -1)  # local ids, -1 = picked elsewhere / none

    def _attend_selected(self, layer, q, selected) -> tuple[torch.Tensor, torch.Tensor]:
        pool, view = self.pool, self.shard.view
        if self._kernels(q):
            rows, seq_lens, _ = self._rows(q)
            out, lse = attend_selected_pages(q, pool, layer, rows, seq_lens, selected)
            return out.float(), lse
        return attend_blocks(q, pool, layer, view, selected)

    # ---- across ranks ----------------------------------------------------------------------------------
    def combine(self, part: tuple[torch.Tensor, torch.Tensor], own: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        """Merge every rank's (out, lse) and the live tail's `own` (rank 0) -> out fp32 [T, Hq, d], identical on
        every rank."""
        return merge_ranks(self._gather(pack_parts(part, own)).flatten(0, 1))

    def _gather(self, tensor: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if not self.timer.enabled:
            return self.comm.all_gather(tensor, out=out)
        if tensor.is_cuda:
            torch.cuda.synchronize(tensor.device)
        t0 = time.perf_counter()
        out = self.comm.all_gather(tensor, out=out)
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
# A candidate travels as one int64 key that orders (score descending, global id ascending): the score's fp32 bits
# made monotone in the high word, 2^31 - 1 - global id in the low word. Keys of distinct blocks are distinct, so
# "fewer than k1 keys above mine" is exactly "in the global top-k1, ties to the lower id" (the one-rank rule).
ID_LIMIT = 1 << 31  # global block ids stay below this
KEY_FLOOR = -0x7F7FFFFF << 32  # the smallest key of a finite score; -inf scores and padding key below it
NO_KEY = KEY_FLOOR - 1  # the sentinel row of a candidate buffer: above every -inf key, below every finite one
PAD_KEY = torch.iinfo(torch.int64).min


def id_low_words(gids: torch.Tensor) -> torch.Tensor:
    """Global ids int64 -> the low words of their keys (2^31 - 1 - id, so that a lower id keys higher)."""
    return (ID_LIMIT - 1) - gids


def block_keys(scores: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """int64 keys of fp32 scores [..., n] and their blocks' low words [n]; -inf and padding key below KEY_FLOOR.
    High word: the score's magnitude bits, negated for a negative score (so -0.0 and +0.0 tie, as they compare)."""
    bits = scores.view(torch.int32)
    sign = bits >> 31  # 0 or -1; (m ^ -1) - (-1) = -m
    return torch.add(low, ((bits & 0x7FFFFFFF) ^ sign) - sign, alpha=1 << 32)


def local_candidates(scores: torch.Tensor, gids: torch.Tensor, k1: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's best k1 blocks per (query, group): (keys int64 [T, Hkv, k1] for one all-gather, local ids
    [T, Hkv, k1]); PAD_KEY and -1 where the rank has fewer blocks. scores fp32 [T, Hkv, W] in local order; gids
    int64 [W] ascending global ids (-inf scores are never picked)."""
    T, Hkv, W = scores.shape
    keys, ids = block_keys(scores.float(), id_low_words(gids[:W])).topk(min(k1, W), dim=-1)
    if W < k1:
        keys = torch.cat([keys, torch.full((T, Hkv, k1 - W), PAD_KEY, dtype=keys.dtype, device=keys.device)], -1)
        ids = torch.cat([ids, torch.full((T, Hkv, k1 - W), -1, dtype=ids.dtype, device=ids.device)], -1)
    return keys, ids


def picked_keys(scores: torch.Tensor, low: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """int64 keys [T, Hkv, k1] of the blocks `ids` (local ids from kernels.ops.topk_blocks, -1 = none) given scores
    [T, Hkv, W] whose last column is -inf (the virtual local block) and low words [W]: only the picks are keyed
    (not all T x W scores); -1 reads the last column, so it keys below KEY_FLOOR and is never picked."""
    col = ids.long().remainder(scores.shape[-1])
    return block_keys(scores.gather(-1, col), low[col])


def candidate_buffer(world: int, shape, device) -> torch.Tensor:
    """int64 [world + 1, *shape]: rows 0..world-1 receive every rank's candidate keys, row `world` is NO_KEY
    (k1 sentinels that outrank every block that must never be picked, see `picked`)."""
    buf = torch.zeros((world + 1, *shape), dtype=torch.int64, device=device)
    buf[world].fill_(NO_KEY)
    return buf


def picked(gathered: torch.Tensor, keys: torch.Tensor, k1: int) -> torch.Tensor:
    """bool [T, Hkv, k1]: which of this rank's candidate `keys` are in the global top-k1. gathered: a
    candidate_buffer holding every rank's keys [R + 1, T, Hkv, k1]. A key is picked iff fewer than k1 keys (all
    ranks' and the sentinels) are above it: finite keys are distinct, and k1 sentinels outrank -inf and padding."""
    above = (gathered[..., None, :] > keys[None, ..., None]).sum((0, -1))
    return above < k1


def count_picks(gathered: torch.Tensor, k1: int) -> torch.Tensor:
    """Blocks picked over every (query, group) of candidate buffers [..., R + 1, T, Hkv, k1] (0-dim, on the
    device): min(k1, finite keys) each."""
    finite = (gathered[..., :-1, :, :, :] >= KEY_FLOOR).sum((-4, -1))
    return finite.clamp_max(k1).sum()


def attend_selected_pages(q, pool: PagePool, layer: int, rows, seq_lens, selected) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse) of q [T, Hq, d] over the local blocks `selected` [T, Hkv, k1] (-1 = none, anywhere) through
    kernels.ops, reading the pages in place; rows [T, W] block table, seq_lens [T] = local blocks * PAGE + 1."""
    return _ops.sparse_decode(q, pool.k[layer], pool.v[layer], rows, seq_lens, selected.to(torch.int32).contiguous(),
                              page_lens=pool.page_lens, return_lse=True)


def pack_parts(part: tuple[torch.Tensor, torch.Tensor], own: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> torch.Tensor:
    """A rank's partial (out [T, Hq, d], lse [T, Hq]) and the live tail's (rank 0 only; else nothing: out 0,
    lse -inf) -> fp32 [2, T, Hq, d + 1]: one all-gather carries both (the decode step's send buffer is laid out so)."""
    T, Hq, d = part[0].shape
    out = torch.empty((2, T, Hq, d + 1), device=part[0].device)
    for slot, (o, lse) in enumerate((part, own or (None, None))):
        if o is None:
            out[slot, ..., :d].zero_()
            out[slot, ..., d].fill_(NEG_INF)
        else:
            out[slot, ..., :d].copy_(o)
            out[slot, ..., d].copy_(lse)
    return out


def merge_ranks(gathered: torch.Tensor, *, guard: bool = True) -> torch.Tensor:
    """Partials [P, T, Hq, d + 1] (every rank's parts, rank order) -> out fp32 [T, Hq, d], merged by their
    log-sum-exp. guard=False skips the fix for a (query, head) no part sees, for callers whose every query sees
    at least one token (the decode step: the new token sees itself)."""
    weights = torch.softmax(gathered[..., -1], dim=0)
    if guard:
        weights = torch.nan_to_num(weights, nan=0.0)  # every part empty: out 0
    return (gathered[..., :-1] * weights[..., None]).sum(0)


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
