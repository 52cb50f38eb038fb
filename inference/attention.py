"""Attention of new tokens over (a) themselves, causally and densely, and (b) repository pages, dense or MSA-sparse.

The repository part goes through the MSA ops (index_block_scores / summary_block_scores, topk_blocks,
sparse_decode) of `kernels.ops` (Triton) on CUDA. On CPU it uses `shared_history_sparse` below, which computes
the same selection and attention for a chunk of queries that share one repository history: block scores as one
matmul per layer over a contiguous copy of the index keys kept with the view (bf16 where the CPU multiplies
bf16 natively: the selection may then differ from fp32 on near ties), then block-major attention: each
(block, KV head) page is gathered once, the queries that chose it padded to a few class sizes, and each class is
one call of the fused CPU attention op, which also returns the log-sum-exp (tested equal to kernels.reference).
Dense layers on CPU read a contiguous copy of the repository K/V kept with the view: in bf16 through bf16
matrix products where the CPU multiplies bf16 natively (`_attend_context_bf16`, the roundings of bf16 flash
attention on a GPU), else in fp32 through the same fused op; the tail's own keys go through that op too
(`attend_own`). The two parts are merged by log-sum-exp. The repository pages are seen
as history blocks 0..n-1 of a virtual sequence whose local block n is the always-empty page 0: the tail itself
plays the local block and is attended outside the kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from inference.kv_cache import PAGE, PagePool
from kernels import ops as _ops
from kernels import reference as ref

_MAX_SCORE_ELEMS = 1 << 26  # fp32 score elements materialised at once by attend_dense
SMALL_T = 4  # up to this many queries, attend_selected gathers per query (decode steps)


def _cpu_has_bf16_matmul() -> bool:
    cpu = getattr(torch, "cpu", None)
    return any(bool(getattr(cpu, name, lambda: False)()) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


# Index-branch block scores on CPU (block selection only, never the attention itself): bf16 keys and queries
# where the CPU multiplies bf16 natively (avx512_bf16 / AMX: ~3x the fp32 matmul), fp32 elsewhere.
CPU_INDEX_DTYPE = torch.bfloat16 if _cpu_has_bf16_matmul() else torch.float32
# Dense-layer attention over the repository on CPU (`attend_context`): bf16 keys, values, queries and weights
# with fp32 softmax sums where the CPU multiplies bf16 natively (the roundings the bf16 GPU path has), fp32 elsewhere.
CPU_CONTEXT_DTYPE = CPU_INDEX_DTYPE
_CONTEXT_ELEMS = 1 << 22  # bf16 scores materialised at once by attend_context (~8 MB, within the shared cache)


@dataclass
class RepoView:
    """The repository pages one request reads: physical ids in logical order, plus derived tables."""

    pages: torch.Tensor  # [n] int64 physical page ids
    block_table: torch.Tensor  # [n + 1] int32, last entry = page 0 (the tail's virtual local block)
    valid: torch.Tensor  # [n * PAGE] bool: slot holds a token
    n_tokens: int
    cache: dict = field(default_factory=dict, repr=False)  # contiguous copies read by the CPU path, per layer

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

    def contiguous(self, pool: PagePool, layer: int, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's repository k, v [Hkv, n_tokens, d] (in `dtype`, default the pool's), gathered once and kept
        with the view."""
        key = ("kv", layer, dtype or pool.k.dtype)
        if key not in self.cache:
            self.cache[key] = tuple(self.gather(x[layer]).to(key[2]).contiguous() for x in (pool.k, pool.v))
        return self.cache[key]

    def gather(self, cache: torch.Tensor) -> torch.Tensor:
        """All repository tokens of one layer's k or v cache, contiguous: [Hkv, n_tokens, d]."""
        x = cache[self.pages]  # (n, Hkv, PAGE, d)
        x = x.transpose(0, 1).reshape(x.shape[1], -1, x.shape[-1])  # (Hkv, n*PAGE, d)
        return x[:, self.valid]


def _softmax_parts(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores over the last dim (-inf = hidden) -> unnormalised weights, their sum as a divisor [..., 1], and the
    log-sum-exp (-inf where nothing is visible, where the weights are all 0)."""
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m)
    den = p.sum(-1)
    lse = torch.where(den > 0, m.squeeze(-1) + torch.log(den.clamp_min(1e-30)), torch.full_like(den, float("-inf")))
    return p, den.clamp_min(1e-30)[..., None], lse


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
        p, norm, lse = _softmax_parts(s)
        o = torch.einsum("hgts,hsd->hgtd", p, vf) / norm
        outs.append(o)
        lses.append(lse)
    out = torch.cat(outs, dim=2).permute(2, 0, 1, 3).reshape(T, Hq, d)
    lse = torch.cat(lses, dim=2).permute(2, 0, 1).reshape(T, Hq)
    return out, lse


def attend_segment(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_ctx: torch.Tensor | None = None,
                   v_ctx: torch.Tensor | None = None, *, offset: int = 0, rows: int = 1024) -> torch.Tensor:
    """Causal attention of queries q [T, Hq, d] over their sequence's own keys k, v [Hkv, offset + T, d] (query t
    sees own keys j <= offset + t), every query also seeing all context keys k_ctx, v_ctx [Hkv, N, d].
    Fused SDPA (no LSE needed). Returns [T, Hq, d] in q's dtype."""
    qh = q.transpose(0, 1)[None]  # (1, Hq, T, d)
    T = q.shape[0]
    if (k_ctx is None or k_ctx.shape[1] == 0) and offset == 0:
        out = F.scaled_dot_product_attention(qh, k[None], v[None], is_causal=True, enable_gqa=True)
        return out[0].transpose(0, 1)
    N = 0 if k_ctx is None else k_ctx.shape[1]
    keys, values = (k, v) if not N else (torch.cat([k_ctx, k], dim=1), torch.cat([v_ctx, v], dim=1))
    outs = []
    for r in range(0, T, rows):
        end = min(T, r + rows)
        width = N + offset + end
        j = torch.arange(width, device=q.device)
        t = torch.arange(r, end, device=q.device)
        mask = (j[None, :] < N) | (j[None, :] - N <= offset + t[:, None])  # (t, width): context, then causal own
        outs.append(F.scaled_dot_product_attention(qh[:, :, r:end], keys[None, :, :width], values[None, :, :width],
                                                   attn_mask=mask, enable_gqa=True))
    return torch.cat(outs, dim=2)[0].transpose(0, 1)


@dataclass
class SelectionStats:
    blocks: object = 0  # selected repository blocks, summed over sparse layers, groups and queries (tensor)
    groups: int = 0  # (query, sparse layer, group) triples counted

    @property
    def mean_blocks(self) -> float:
        return float(self.blocks) / self.groups if self.groups else 0.0


@dataclass
class RepoAttention:
    """How the new tokens read the repository: dense, or MSA top-k per GQA group on sparse layers."""

    pool: PagePool
    view: RepoView
    sparse: bool
    top_k: int = 16
    summary_mode: str = "minmax"
    use_kernels: bool | None = None  # None: kernels.ops on CUDA, shared_history_sparse elsewhere
    index_dtype: torch.dtype = CPU_INDEX_DTYPE  # CPU path: dtype of the index-branch block scores
    context_dtype: torch.dtype | None = None  # CPU path: dtype of dense layers' repository attention (None: CPU_CONTEXT_DTYPE)
    stats: SelectionStats = field(default_factory=SelectionStats)

    def dense_layer(self, layer: int) -> bool:
        """True where this layer reads every repository token (dense mode, or a dense layer of the model)."""
        return not (self.sparse and self.pool.cfg.sparse_layers[layer])

    def context(self, layer: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Every repository token of one layer as contiguous k, v [Hkv, n_tokens, d] (None, None when empty)."""
        if self.view.n_blocks == 0:
            return None, None
        return self.view.gather(self.pool.k[layer]), self.view.gather(self.pool.v[layer])

    def __call__(self, layer: int, q: torch.Tensor, index_q: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """q [T, Hq, d] -> (out fp32 [T, Hq, d], lse [T, Hq]) over the repository pages."""
        pool, view = self.pool, self.view
        T, Hq, d = q.shape
        if view.n_blocks == 0:
            return torch.zeros(T, Hq, d, device=q.device), torch.full((T, Hq), float("-inf"), device=q.device)
        on_cpu = not (q.is_cuda if self.use_kernels is None else self.use_kernels)
        if not (self.sparse and pool.cfg.sparse_layers[layer]):
            if on_cpu:
                return attend_context(q, *view.contiguous(pool, layer, self.context_dtype or CPU_CONTEXT_DTYPE))
            return attend_dense(q, view.gather(pool.k[layer]), view.gather(pool.v[layer]))
        if on_cpu:
            use_index = index_q is not None and layer in pool.index_slot
            out, lse, n_sel = shared_history_sparse(q, index_q if use_index else None, pool, layer, view, self.top_k,
                                                    self.summary_mode, score_dtype=self.index_dtype)
            self.stats.blocks = self.stats.blocks + n_sel
            self.stats.groups += T * pool.cfg.num_kv_heads
            return out, lse
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
        self.stats.blocks = self.stats.blocks + (selected >= 0).sum()  # stays on the device: no sync per layer
        self.stats.groups += selected.shape[0] * selected.shape[1]
        out, lse = _ops.sparse_decode(q, pool.k[layer], pool.v[layer], rows, seq_lens, selected,
                                      page_lens=pool.page_lens, return_lse=True)
        return out.float(), lse


def _rows_per_chunk(per_row: int) -> int:
    return max(1, (1 << 24) // max(1, per_row))


def attend_context(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, Hq, d] over context keys all visible, k, v [Hkv, N, d] (N > 0). Same values as attend_dense(q, k, v):
    out fp32 [T, Hq, d], natural-log lse [T, Hq]. fp32 k, v: through the fused CPU attention op, which also returns
    the log-sum-exp (the queries of one GQA group stacked, so k, v are read as they are). bf16 k, v (contiguous):
    `_attend_context_bf16`."""
    if k.dtype == torch.bfloat16:
        return _attend_context_bf16(q, k, v)
    T, Hq, d = q.shape
    Hkv = k.shape[0]
    G = Hq // Hkv
    qg = q.float().view(T, Hkv, G, d).permute(1, 2, 0, 3).reshape(1, Hkv, G * T, d)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(qg, k.float()[None], v.float()[None], 0.0, False)
    out = out[0].view(Hkv, G, T, d).permute(2, 0, 1, 3).reshape(T, Hq, d)
    return out, lse[0].view(Hkv, G, T).permute(2, 0, 1).reshape(T, Hq)


def _attend_context_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """attend_context with bf16 matrix products, as bf16 flash attention on a GPU rounds: the scaled queries, k
    and v in bf16, scores from a bf16 product (fp32 accumulation inside, rounded to bf16), exp(score - row max)
    computed in fp32 and rounded to bf16 as the weights of the P @ V product (fp32 accumulation), the softmax sums
    and the log-sum-exp in fp32. Chunks of query rows (the G heads of a group stacked) whose scores against all
    N keys stay within the shared cache; each chunk is exact over its rows (no running rescale)."""
    T, Hq, d = q.shape
    Hkv, N, _ = k.shape
    G = Hq // Hkv
    rows = G * T
    qg = (q.float() * d**-0.5).view(T, Hkv, G, d).permute(1, 2, 0, 3).reshape(Hkv, rows, d).to(torch.bfloat16)
    k_t = k.transpose(1, 2)  # (Hkv, d, N), a view: the product reads k as stored
    out = torch.empty(Hkv, rows, d)
    lse = torch.empty(Hkv, rows)
    step = max(1, _CONTEXT_ELEMS // (Hkv * N))
    for r in range(0, rows, step):
        s = torch.bmm(qg[:, r : r + step], k_t)  # (Hkv, t, N) bf16
        m = s.amax(-1, keepdim=True)
        torch.sub(s, m, out=s).exp_()  # each row's largest weight is 1: the sums are >= 1
        den = s.sum(-1, dtype=torch.float32)
        out[:, r : r + step] = torch.bmm(s, v).float() / den[..., None]
        lse[:, r : r + step] = m[..., 0].float() + torch.log(den)
    out = out.view(Hkv, G, T, d).permute(2, 0, 1, 3).reshape(T, Hq, d)
    return out, lse.view(Hkv, G, T).permute(2, 0, 1).reshape(T, Hq)


def attend_own(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The live tail's new queries q [T, Hq, d] over its own keys k, v [Hkv, start + T, d], query t seeing keys
    j <= start + t, through the fused CPU attention op: the keys before `start` (seen by every query) in one call,
    the T new ones causally in another (each query head over its group's keys), merged by log-sum-exp.
    Same values as attend_dense(q, k, v, causal_start=start): out fp32 [T, Hq, d], natural-log lse [T, Hq]."""
    T, Hq, d = q.shape
    Hkv = k.shape[0]
    if T == 1:  # a decode step sees every key
        return attend_context(q, k, v)
    new_k = k[:, start:].float().repeat_interleave(Hq // Hkv, 0)[None]  # (1, Hq, T, d)
    new_v = v[:, start:].float().repeat_interleave(Hq // Hkv, 0)[None]
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q.float().transpose(0, 1)[None], new_k, new_v,
                                                                          0.0, True)
    own = out[0].transpose(0, 1), lse[0].T
    if not start:
        return own
    out, lse = ref.merge_partials(*(torch.stack(x) for x in zip(attend_context(q, k[:, :start], v[:, :start]), own)))
    return out, lse


def _index_keys(pool: PagePool, layer: int, view: RepoView,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The view's index keys of one layer as one matrix [n * PAGE, d_idx] in `dtype` (kept on the view: the
    repository part does not change while the view lives), the pages not full and their slots past the end
    ([m], [m, PAGE])."""
    key = ("index", layer, dtype)
    if key not in view.cache:
        lens = pool.page_lens[view.pages].long()
        invalid = torch.arange(PAGE)[None, :] >= lens[:, None]
        partial = invalid.any(1).nonzero().flatten()
        keys = pool.index_k[pool.index_slot[layer]][view.pages].to(dtype).reshape(-1, pool.index_k.shape[-1])
        view.cache[key] = (keys, partial, invalid[partial])
    return view.cache[key]


def _page_max(s: torch.Tensor, out: torch.Tensor) -> None:
    """out [b, rows] = s [b, PAGE, rows].amax(1), by halving the page dim (contiguous elementwise maxima: faster
    than the strided reduction, above all in bf16)."""
    w = s.shape[1]
    while w > 2:
        w //= 2
        s = torch.maximum(s[:, :w], s[:, w : 2 * w])
    torch.maximum(s[:, 0], s[:, 1], out=out)


def shared_block_scores(q, index_q, pool: PagePool, layer: int, view: RepoView, summary_mode: str,
                        score_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Block scores [T, Hkv, n] (fp32) of every repository block for queries sharing the repository as history
    (same values as kernels.reference index_block_scores / summary_block_scores). score_dtype bf16: index keys,
    queries and the matmul's products in bf16 (fp32 accumulation inside the matmul, the result rounded to bf16):
    the same blocks but near ties."""
    T, Hq, d = q.shape
    Hkv = pool.cfg.num_kv_heads
    pages = view.pages
    n = pages.numel()
    empty = pool.page_lens[pages] == 0
    if index_q is not None:
        keys, partial, invalid = _index_keys(pool, layer, view, score_dtype)  # (n*PAGE, d_idx)
        rows = T * Hkv
        q_t = index_q.to(score_dtype).reshape(rows, -1).T  # (d_idx, T*Hkv), a transposed view: faster in mm than a copy
        elems = (1 << 20) if score_dtype == torch.float32 else (1 << 21)  # chunks whose scores (~4 MB) stay in cache
        blocks = max(1, elems // (PAGE * rows))
        if blocks >= n:  # few queries (decode): one pass over the keys
            s = torch.mm(keys, q_t).view(n, PAGE, rows)
            block = torch.empty(n, rows, dtype=score_dtype)
            _page_max(s, block)
            s = s[partial]
        else:
            block = torch.empty(n, rows, dtype=score_dtype)
            for c in range(0, n, blocks):
                _page_max(torch.mm(keys[c * PAGE : (c + blocks) * PAGE], q_t).view(-1, PAGE, rows), block[c : c + blocks])
            s = torch.matmul(keys.view(n, PAGE, -1)[partial], q_t)
        if partial.numel():  # slots past a page's end hold zeros: those pages' maxima again, masked
            block[partial] = s.masked_fill(invalid[..., None], float("-inf")).amax(1)
        scores = block.T.float().reshape(T, Hkv, n)
    else:
        qg = q.float().view(T, Hkv, Hq // Hkv, d)
        if summary_mode == "mean":
            scores = torch.einsum("thd,nhd->thn", qg.sum(2), pool.kmean[layer][pages].float())
        else:  # Quest bound: sum_d max(q*kmin, q*kmax) = q+ . kmax + q- . kmin (kmin <= kmax)
            scores = torch.einsum("thgd,nhd->thn", qg.clamp(min=0), pool.kmax[layer][pages].float())
            scores = scores + torch.einsum("thgd,nhd->thn", qg.clamp(max=0), pool.kmin[layer][pages].float())
    return scores.masked_fill(empty, float("-inf"))


def select_blocks(scores: torch.Tensor, top_k: int) -> torch.Tensor:
    """[T, Hkv, n] scores -> the top (top_k - 1) history blocks per query and group [T, Hkv, <= top_k - 1]
    (descending, ties to the lower block, -1 for -inf), or every block when all fit. One top-k over int64 keys
    that order (score, then lower block) exactly: the fp32 score's bits mapped to an order-preserving int32 in the
    high half, the block's rank from the top in the low half (no ties to resolve, even among bf16-rounded scores)."""
    T, Hkv, n = scores.shape
    if n + 1 <= top_k:
        return torch.arange(n).expand(T, Hkv, n)
    bits = (scores.float() + 0.0).view(torch.int32).long()  # + 0.0 turns -0.0 into +0.0: equal scores, equal keys
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: magnitude bits reversed
    key = ordered * 2**32 + (2**32 - 1 - torch.arange(n, device=scores.device))  # (score, -block), lexicographic
    idx = torch.topk(key, top_k - 1, dim=-1).indices
    return idx.masked_fill(scores.gather(-1, idx) == float("-inf"), -1)


def _class_sizes(counts: torch.Tensor, min_rows: int, steps: int) -> torch.Tensor:
    """Padded query slots of work units chosen by `counts` (> 0) queries: at least min_rows, else counts rounded
    up on a ladder of 2**steps sizes per octave (steps 2: 5, 6, 7, 8, 10, 12, 14, 16, 20, ...; at most ~25% padding)."""
    octave = torch.ceil(torch.log2(counts.double())).long()
    quantum = (2 ** (octave - 1 - steps)).clamp(min=1)
    return torch.where(counts > min_rows, (counts + quantum - 1) // quantum * quantum, min_rows)


def _page_rows(pool: PagePool, layer: int, page_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 K and V [len(page_rows), PAGE, d] of (page, KV head) rows page * Hkv + head of one layer's pool."""
    d = pool.k.shape[-1]
    # rows as flat vectors: one copy per row (~3x faster on CPU than gathering [PAGE, d] slices)
    return tuple(x[layer].reshape(-1, PAGE * d).index_select(0, page_rows).view(-1, PAGE, d).float()
                 for x in (pool.k, pool.v))


def attend_selected(q, pool: PagePool, layer: int, view: RepoView, selected: torch.Tensor, *, min_rows: int = 4,
                    steps: int = 2):
    """Exact attention of q [T, Hq, d] over each query's own selected blocks (selected [T, Hkv, k], logical ids,
    -1 unused). A prompt goes block-major: a work unit is one (block, KV head), its K/V page gathered once; the
    queries that chose it are padded up to a few class sizes (`_class_sizes`), and each class of units is one
    call of the fused CPU attention op (batch = units; the query heads of a GQA group stacked as rows; the slots
    past a partial page's end masked), which also gives the log-sum-exp. Each query's per-block partials are then
    merged by log-sum-exp. Returns out fp32 [T, Hq, d], natural-log lse [T, Hq]."""
    T, Hq, d = q.shape
    Hkv, k = pool.cfg.num_kv_heads, selected.shape[-1]
    G = Hq // Hkv
    lens = pool.page_lens[view.pages].long()
    if T <= SMALL_T:  # a decode step: each query's own blocks gathered directly, one fused call
        safe = selected.clamp(min=0).long()
        page_rows = (view.pages[safe] * Hkv + torch.arange(Hkv)[None, :, None]).flatten()  # (T * Hkv * k)
        keys, values = (x.view(T * Hkv, 1, k * PAGE, d) for x in _page_rows(pool, layer, page_rows))
        visible = ((selected >= 0)[..., None] & (torch.arange(PAGE) < lens[safe][..., None])).view(T * Hkv, k * PAGE)
        mask = torch.zeros(T * Hkv, 1, 1, k * PAGE).masked_fill(~visible[:, None, None, :], float("-inf"))
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q.float().reshape(T * Hkv, 1, G, d), keys, values, 0.0, False, attn_mask=mask)
        lse = lse.masked_fill(~visible.any(-1)[:, None, None], float("-inf"))  # nothing visible: lse -inf, out 0
        return out.reshape(T, Hq, d), lse.reshape(T, Hq)
    n_units = lens.numel() * Hkv
    query, head, slot = (selected >= 0).nonzero(as_tuple=True)  # every (query, group, slot) that reads a block
    unit = selected[query, head, slot].long() * Hkv + head
    order = torch.argsort(unit, stable=True)
    unit, query, head, slot = unit[order], query[order], head[order], slot[order]
    counts = torch.bincount(unit, minlength=n_units)
    rank = torch.arange(unit.numel()) - (torch.cumsum(counts, 0) - counts)[unit]  # position among the unit's queries
    units = counts.nonzero().flatten()
    size = _class_sizes(counts[units], min_rows, steps)
    by_size = torch.argsort(size, stable=True)
    units, size = units[by_size], size[by_size]
    first = torch.cumsum(size, 0) - size  # first padded row of each unit, units of one class adjacent
    unit_first = torch.zeros(n_units, dtype=torch.long)
    unit_first[units] = first
    row = unit_first[unit] + rank  # padded row of every pair
    n_rows = int(first[-1] + size[-1]) if units.numel() else 0
    q_rows = torch.full((n_rows,), T * Hkv, dtype=torch.long)  # row T * Hkv of the padded queries: zeros
    q_rows[row] = query * Hkv + head
    queries = torch.cat([q.float().reshape(T * Hkv, G, d), q.new_zeros(1, G, d, dtype=torch.float32)])[q_rows]
    page_rows = view.pages[units // Hkv] * Hkv + units % Hkv  # (page, head) rows of the pool's [pages * Hkv, PAGE, d]
    keys, values = _page_rows(pool, layer, page_rows)
    unit_lens = lens[units // Hkv]
    outs, lses = [], []
    u = 0
    for r, m in zip(*(x.tolist() for x in torch.unique_consecutive(size, return_counts=True))):
        ends = unit_lens[u : u + m]
        mask = None
        if bool((ends < PAGE).any()):  # partial pages: the zero slots past the end hidden
            hidden = torch.arange(PAGE)[None, :] >= ends[:, None]
            mask = torch.zeros(m, 1, 1, PAGE).masked_fill(hidden[:, None, None, :], float("-inf"))
        f = int(first[u])
        o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            queries[f : f + m * r].view(m, 1, r * G, d), keys[u : u + m, None], values[u : u + m, None], 0.0, False,
            attn_mask=mask)
        if mask is not None:  # an empty page: nothing visible, lse -inf (the op gives 0)
            lse = lse.masked_fill((ends == 0)[:, None, None], float("-inf"))
        outs.append(o.reshape(m * r, G, d))
        lses.append(lse.reshape(m * r, G))
        u += m
    outs.append(q.new_zeros(1, G, d, dtype=torch.float32))  # row n_rows: what an unused slot reads
    lses.append(torch.full((1, G), float("-inf")))
    pair_row = torch.full((T, Hkv, k), n_rows, dtype=torch.long)
    pair_row[query, head, slot] = row
    part_out, part_lse = torch.cat(outs)[pair_row], torch.cat(lses)[pair_row]  # (T, Hkv, k, G, d), (T, Hkv, k, G)
    m = part_lse.amax(2)  # (T, Hkv, G)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w = torch.exp(part_lse - m_safe[:, :, None])
    den = w.sum(2)
    out = (w[..., None] * part_out).sum(2) / den.clamp_min(1e-30)[..., None]
    lse = torch.where(den > 0, m_safe + torch.log(den.clamp_min(1e-30)), torch.full_like(den, float("-inf")))
    return out.view(T, Hq, d), lse.view(T, Hq)


def shared_history_sparse(q, index_q, pool: PagePool, layer: int, view: RepoView, top_k: int, summary_mode: str,
                          score_dtype: torch.dtype = torch.float32):
    """MSA over the repository for queries q [T, Hq, d] whose history is the whole view: per query and group the
    top (top_k - 1) blocks (the tail is the local block; index scores in score_dtype). Returns (out fp32
    [T, Hq, d], lse [T, Hq], number of selected blocks summed over queries and groups)."""
    scores = shared_block_scores(q, index_q, pool, layer, view, summary_mode, score_dtype)  # (T, Hkv, n)
    selected = select_blocks(scores, top_k)
    out, lse = attend_selected(q, pool, layer, view, selected)
    return out, lse, int((selected >= 0).sum())


def merge(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Merge partial attentions over disjoint key sets -> out fp32 [T, Hq, d]."""
    if len(parts) == 1:
        return parts[0][0]
    outs = torch.stack([p[0] for p in parts])
    lses = torch.stack([p[1] for p in parts])
    return ref.merge_partials(outs, lses)[0]
