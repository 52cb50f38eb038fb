"""Pure-torch reference of every MSA kernel: the ground truth for tests and the CPU path.

Everything is computed in fp32 from the stored values (bf16/fp16 upcast), gathered through the block table,
so it is slow but obviously right. It does not pick kernels (that is `kernels.ops`) and never touches CUDA
specifics; it runs on any device.

Cache contract (one layer; PAGE = 128 tokens = one MSA block):
  k_cache, v_cache   [num_pages, Hkv, PAGE, d]     bf16 / fp16 / fp32
  index_k_cache      [num_pages, PAGE, d_idx]      M3 index keys (post-norm, post-RoPE), one head shared by all groups
  kmin, kmax, kmean  [num_pages, Hkv, d]           page key summaries (Quest bound / mean pooling)
  block_table        [B, max_blocks] int32         logical block b of row i lives in physical page block_table[i, b]
  seq_lens           [B] int32                     tokens visible to row i's query, the query's own token included
                                                   (its K/V is already written): query position p = seq_len - 1
  page_lens          [num_pages] int32, optional   valid tokens in each physical page (a segment's last page may be
                                                   partial); None means every page is full up to seq_len
Logical token j = PAGE*b + t of row i is visible iff j < seq_lens[i] and t < page_lens[block_table[i, b]].
The local block of row i is L = (seq_lens[i] - 1) // PAGE; blocks 0..L-1 are history.
Query heads map to KV heads GQA-style: query head h belongs to group h // (Hq // Hkv).

A chunk of prefill queries is a batch of rows that share one block table: `prefill_rows(block_table, positions)`
returns (block_table expanded to [T, max_blocks], seq_lens = positions + 1), so every function below also serves
prefill (`sparse_prefill` wraps exactly that).
"""

from __future__ import annotations

import math

import torch

PAGE = 128
_ROWS_PER_CHUNK = 16  # rows gathered at once in the attention references (bounds CPU memory)
_PAGES_PER_CHUNK = 512  # pages scored at once in the score references


def prefill_rows(block_table: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows for a chunk of T query tokens of one sequence: block_table [max_blocks] -> [T, max_blocks] (a view),
    positions [T] (0-based, their K/V already written) -> seq_lens [T] = positions + 1."""
    assert block_table.dim() == 1, block_table.shape
    positions = positions.to(torch.int32)
    return block_table.unsqueeze(0).expand(positions.numel(), -1), positions + 1


def visible_counts(block_table: torch.Tensor, seq_lens: torch.Tensor, page_lens: torch.Tensor | None = None) -> torch.Tensor:
    """Visible tokens of every logical block: int64 [B, max_blocks], each in 0..PAGE (visible = the first count)."""
    nb = block_table.shape[1]
    starts = torch.arange(nb, device=block_table.device) * PAGE
    counts = (seq_lens.long()[:, None] - starts[None, :]).clamp(0, PAGE)
    if page_lens is not None:
        phys = block_table.long().clamp(0, page_lens.numel() - 1)
        counts = torch.minimum(counts, page_lens.long()[phys])
    return counts


def _history_mask(block_table, seq_lens, page_lens):
    """[B, nb] bool: block is history (below the local block) and has at least one visible token."""
    nb = block_table.shape[1]
    local = (seq_lens.long() - 1).div(PAGE, rounding_mode="floor")
    hist = torch.arange(nb, device=block_table.device)[None, :] < local[:, None]
    return hist & (visible_counts(block_table, seq_lens, page_lens) > 0)


def index_block_scores(q_idx, index_k_cache, block_table, seq_lens, page_lens=None) -> torch.Tensor:
    """M3 index block scores for one query per row.

    q_idx [B, Hkv, d_idx] (one index-query head per KV head), index_k_cache [num_pages, PAGE, d_idx].
    Returns fp32 [B, Hkv, max_blocks]: for each history block, max over its visible tokens of the raw q_idx·k_idx
    (no scale: ranking is scale-invariant); the local block, later blocks and empty blocks are -inf.
    """
    B, H, _ = q_idx.shape
    counts = visible_counts(block_table, seq_lens, page_lens)
    valid = _history_mask(block_table, seq_lens, page_lens)
    out = torch.full((B, H, block_table.shape[1]), float("-inf"), device=q_idx.device)
    tok = torch.arange(PAGE, device=q_idx.device)
    for i in range(B):
        blocks = valid[i].nonzero().flatten()
        for c in range(0, blocks.numel(), _PAGES_PER_CHUNK):
            blk = blocks[c : c + _PAGES_PER_CHUNK]
            keys = index_k_cache[block_table[i, blk].long()].float()  # [n, PAGE, d_idx]
            s = torch.einsum("hd,ntd->hnt", q_idx[i].float(), keys)
            s = s.masked_fill((tok[None, :] >= counts[i, blk][:, None])[None], float("-inf"))
            out[i, :, blk] = s.amax(-1)
    return out


def summary_block_scores(q, kmin, kmax, block_table, seq_lens, *, kmean=None, mode="minmax", page_lens=None) -> torch.Tensor:
    """Training-free block scores from page summaries, one score per GQA group.

    q [B, Hq, d]; kmin/kmax/kmean [num_pages, Hkv, d].
    mode "minmax" (Quest): per query head, sum over dims of max(q*kmin, q*kmax) (an upper bound of max q·k in the
    page), then SUMMED over the group's query heads.  mode "mean": sum over the group's heads of q·kmean.
    Returns fp32 [B, Hkv, max_blocks]; the local block, later blocks and empty blocks are -inf.
    """
    assert mode in ("minmax", "mean"), mode
    if mode == "mean":
        assert kmean is not None, "mode='mean' needs kmean"
    B, Hq, d = q.shape
    Hkv = kmin.shape[1] if kmin is not None else kmean.shape[1]
    qg = q.float().view(B, Hkv, Hq // Hkv, d)
    valid = _history_mask(block_table, seq_lens, page_lens)
    out = torch.full((B, Hkv, block_table.shape[1]), float("-inf"), device=q.device)
    for i in range(B):
        blocks = valid[i].nonzero().flatten()
        for c in range(0, blocks.numel(), _PAGES_PER_CHUNK):
            blk = blocks[c : c + _PAGES_PER_CHUNK]
            pages = block_table[i, blk].long()
            if mode == "mean":
                s = torch.einsum("hd,nhd->hn", qg[i].sum(1), kmean[pages].float())
            else:
                lo = kmin[pages].float().transpose(0, 1)[:, None]  # [Hkv, 1, n, d]
                hi = kmax[pages].float().transpose(0, 1)[:, None]
                qq = qg[i][:, :, None, :]  # [Hkv, G, 1, d]
                s = torch.maximum(qq * lo, qq * hi).sum(-1).sum(1)  # [Hkv, n]
            out[i, :, blk] = s
    return out


def topk_blocks(scores, seq_lens, k=16, *, local_blocks=1, sink_blocks=0) -> torch.Tensor:
    """Blocks each GQA group attends to: int32 [B, Hkv, k], valid entries first, padding -1.

    With L = (seq_len - 1) // PAGE: if L + 1 <= k, all blocks 0..L ascending. Otherwise the sink blocks
    0..sink_blocks-1, then the top (k - sink_blocks - local_blocks) of the remaining history blocks by score
    (descending, ties to the lower block id; -inf blocks are never picked), then the local blocks
    L-local_blocks+1..L, the local block L always the last valid entry. Scores at blocks >= the first local
    block are ignored. scores [B, Hkv, max_blocks] fp32, max_blocks >= L + 1; no NaN.
    """
    B, H, nb = scores.shape
    assert k > sink_blocks + local_blocks - 1 and local_blocks >= 1, (k, sink_blocks, local_blocks)
    out = torch.full((B, H, k), -1, dtype=torch.int32, device=scores.device)
    n_pick = k - sink_blocks - local_blocks
    for i in range(B):
        L = (int(seq_lens[i]) - 1) // PAGE
        if L < 0:
            continue
        assert L < nb, f"row {i}: local block {L} beyond max_blocks {nb}"
        if L + 1 <= k:
            out[i, :, : L + 1] = torch.arange(L + 1, dtype=torch.int32)
            continue
        lo, hi = sink_blocks, L - local_blocks + 1  # candidates [lo, hi)
        cand = scores[i, :, lo:hi].float()
        order = torch.sort(cand, dim=-1, descending=True, stable=True).indices[:, :n_pick]
        best = cand.gather(-1, order)
        sinks = list(range(sink_blocks))
        locals_ = list(range(hi, L + 1))
        for h in range(H):
            picked = (order[h][best[h] > float("-inf")] + lo).tolist()
            row = sinks + picked + locals_
            out[i, h, : len(row)] = torch.tensor(row, dtype=torch.int32)
    return out


def _gather(cache, pages, heads):
    """cache[pages, heads] in fp32; fp8 pages are gathered as bytes (indexing need not support fp8)."""
    if cache.dtype == torch.float8_e4m3fn:
        return cache.view(torch.uint8)[pages, heads].view(torch.float8_e4m3fn).float()
    return cache[pages, heads].float()


def _attend(q, k_cache, v_cache, pages, counts, scale, k_scale=None, v_scale=None):
    """Exact softmax attention of q [R, Hkv, G, d] over gathered pages [R, Hkv, n] with visible counts
    [R, Hkv, n]; fp8 pages are dequantised by their per-(page, head) scales. Returns fp32 out [R, Hkv, G, d]
    (0 where nothing is visible) and natural-log lse [R, Hkv, G]."""
    R, Hkv, n = pages.shape
    heads = torch.arange(Hkv, device=pages.device)[None, :, None]
    K = _gather(k_cache, pages, heads)  # [R, Hkv, n, PAGE, d] fp32
    V = _gather(v_cache, pages, heads)
    if k_scale is not None:
        K = K * k_scale[pages, heads].float()[..., None, None]
        V = V * v_scale[pages, heads].float()[..., None, None]
    K, V = K.flatten(2, 3), V.flatten(2, 3)  # [R, Hkv, n*PAGE, d]
    vis = (torch.arange(PAGE, device=pages.device) < counts[..., None]).flatten(2)  # [R, Hkv, n*PAGE]
    s = torch.einsum("rhgd,rhnd->rhgn", q.float(), K) * scale
    s = s.masked_fill(~vis[:, :, None, :], float("-inf"))
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m)
    den = p.sum(-1)
    out = torch.einsum("rhgn,rhnd->rhgd", p, V) / den.clamp_min(1e-30)[..., None]
    lse = torch.where(den > 0, m.squeeze(-1) + torch.log(den.clamp_min(1e-30)), torch.full_like(den, float("-inf")))
    return out, lse


def sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, *, scale=None, page_lens=None, return_lse=False,
                  k_scale=None, v_scale=None):
    """Exact attention of each row's query over the visible tokens of its group's selected blocks.

    q [B, Hq, d]; selected [B, Hkv, k] int32 logical block ids (unique per row, -1 = unused) as from topk_blocks.
    fp8 pages (float8_e4m3fn) come with k_scale/v_scale fp32 [num_pages, Hkv]: value = stored * scale
    (`kernels.fp8_kv`). scale defaults to d**-0.5. Returns out [B, Hq, d] in q's dtype (0 for a row with nothing visible) and, with
    return_lse, also the natural-log log-sum-exp of the scaled scores, fp32 [B, Hq] (-inf when empty).
    """
    B, Hq, d = q.shape
    Hkv = k_cache.shape[1]
    scale = d**-0.5 if scale is None else scale
    counts = visible_counts(block_table, seq_lens, page_lens)
    sel = selected.long()
    used = sel >= 0
    selc = sel.clamp(min=0).view(B, -1)
    pages = block_table.long().gather(1, selc).view(sel.shape)
    cnt = counts.gather(1, selc).view(sel.shape) * used
    outs, lses = [], []
    for r in range(0, B, _ROWS_PER_CHUNK):
        rows = slice(r, r + _ROWS_PER_CHUNK)
        qg = q[rows].view(-1, Hkv, Hq // Hkv, d)
        o, lse = _attend(qg, k_cache, v_cache, pages[rows], cnt[rows], scale, k_scale, v_scale)
        outs.append(o.reshape(-1, Hq, d))
        lses.append(lse.reshape(-1, Hq))
    out = torch.cat(outs).to(q.dtype)
    return (out, torch.cat(lses)) if return_lse else out


def dense_decode(q, k_cache, v_cache, block_table, seq_lens, *, scale=None, page_lens=None, return_lse=False):
    """Exact attention of each row's query over all its visible tokens (same conventions as sparse_decode)."""
    nb = block_table.shape[1]
    B, Hkv = q.shape[0], k_cache.shape[1]
    n_used = max(1, min(nb, (int(seq_lens.max()) + PAGE - 1) // PAGE)) if B else 1
    selected = torch.arange(n_used, dtype=torch.int32, device=q.device).expand(B, Hkv, n_used)
    return sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, scale=scale, page_lens=page_lens, return_lse=return_lse)


def sparse_prefill(q, k_cache, v_cache, block_table, positions, selected, *, scale=None, page_lens=None, return_lse=False):
    """Block-sparse causal attention for a chunk of T query tokens of one sequence.

    q [T, Hq, d]; block_table [max_blocks] (the sequence's table); positions [T] 0-based query positions whose
    K/V are already in the cache; selected [T, Hkv, k] per query token (e.g. topk_blocks over the rows of
    prefill_rows). Each query sees the tokens of its selected blocks at positions <= its own.
    """
    rows, seq_lens = prefill_rows(block_table, positions)
    return sparse_decode(q, k_cache, v_cache, rows, seq_lens, selected, scale=scale, page_lens=page_lens, return_lse=return_lse)


def dense_prefill(q, k_cache, v_cache, block_table, positions, *, scale=None, page_lens=None, return_lse=False):
    """Dense causal attention for a chunk of T query tokens of one sequence: q [T, Hq, d], block_table [max_blocks]
    (the sequence's table, shared by every query), positions [T]; query t sees every visible token at logical
    positions <= positions[t] (dense_decode over the rows of prefill_rows)."""
    rows, seq_lens = prefill_rows(block_table, positions)
    return dense_decode(q, k_cache, v_cache, rows, seq_lens, scale=scale, page_lens=page_lens, return_lse=return_lse)


def merge_partials(outs: torch.Tensor, lses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge S partial attentions over disjoint token sets: outs [S, ..., d], lses [S, ...] (natural log) ->
    (out [..., d] in outs' dtype, lse [...]). Parts with lse = -inf weigh nothing."""
    m = lses.amax(0)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w = torch.exp(lses - m_safe)  # [S, ...]
    den = w.sum(0)
    out = (w[..., None] * outs.float()).sum(0) / den.clamp_min(1e-30)[..., None]
    lse = torch.where(den > 0, m_safe + torch.log(den.clamp_min(1e-30)), torch.full_like(den, float("-inf")))
    return out.to(outs.dtype), lse


def page_summaries(k_cache, page_ids, page_lens) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Key summaries of filled pages: page_ids [P], page_lens [P] valid tokens (the first ones) of each page.
    Returns kmin, kmax, kmean, each [P, Hkv, d] in k_cache's dtype (all zero for an empty page)."""
    K = k_cache[page_ids.long()].float()  # [P, Hkv, PAGE, d]
    n = page_lens.long().to(K.device)
    vis = (torch.arange(PAGE, device=K.device)[None, :] < n[:, None])[:, None, :, None]
    empty = (n == 0)[:, None, None]
    kmin = K.masked_fill(~vis, math.inf).amin(2).masked_fill(empty, 0.0)
    kmax = K.masked_fill(~vis, -math.inf).amax(2).masked_fill(empty, 0.0)
    kmean = (K * vis).sum(2) / n.clamp(min=1)[:, None, None]
    dt = k_cache.dtype
    return kmin.to(dt), kmax.to(dt), kmean.to(dt)


def write_page_summaries(k_cache, kmin, kmax, kmean, page_ids, page_lens) -> None:
    """Recompute the summaries of pages page_ids in place (kmin/kmax/kmean [num_pages, Hkv, d]; any may be None)."""
    lo, hi, mean = page_summaries(k_cache, page_ids, page_lens)
    idx = page_ids.long()
    for dst, src in ((kmin, lo), (kmax, hi), (kmean, mean)):
        if dst is not None:
            dst[idx] = src.to(dst.dtype)
