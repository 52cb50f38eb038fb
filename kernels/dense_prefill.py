"""Triton dense attention of a chunk of query tokens that share one block table (a prompt over paged K/V).

Semantics: `kernels.reference.dense_prefill` (= dense_decode over `reference.prefill_rows`), but the T queries'
block table is read once as the shared [max_blocks] table, never expanded per query, and the queries are not one
row each: the G query heads of every query of a GQA group are stacked into tiles of BLOCK_M rows (query-major), so
one program per (row tile, KV head, split) reads each page part once for BLOCK_M // G queries and multiplies
[BLOCK_M, d] x [d, BLOCK_N] tiles (a decode kernel pads each query's G heads to 16 rows instead). Query t sees the
visible tokens j <= positions[t] (j < page_lens of its page). Splits walk disjoint ranges of page parts with an online
softmax in base 2 and are merged by `sparse_decode`'s merge kernel; one split writes the result itself. The
range length is a runtime argument, so a new repository size or chunk length does not compile the kernel again.
Non-job: choosing blocks (block-sparse prompts go through `sparse_decode`'s kernels), launch tuning per GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.sparse_decode import LOG2E, PAGE, _dot, _softmax_finish, _softmax_step, merge_splits, split_partials

PAGE_C = tl.constexpr(PAGE)
TARGET_PROGRAMS = 1024  # programs per launch the split count aims at (fills an H100's SMs several times)


@triton.jit
def _dense_prefill_kernel(
    q_ptr, k_ptr, v_ptr, bt_ptr, seq_ptr, plen_ptr, o_ptr, lse_ptr,
    T, HKV, NB, UNITS, qk_scale,
    s_qt, s_qh, s_kp, s_kh, s_kt, s_vp, s_vh, s_vt,
    s_ot, s_oh, s_os, s_lt, s_lh,
    G: tl.constexpr, BLOCK_M: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
    SUB: tl.constexpr, HAS_PLEN: tl.constexpr, DIRECT: tl.constexpr, IEEE: tl.constexpr,
):
    tile = tl.program_id(0) // HKV
    h = tl.program_id(0) % HKV
    split = tl.program_id(1)
    mm = tile * BLOCK_M + tl.arange(0, BLOCK_M)  # stacked rows: query t = mm // G, its head g = mm % G
    t = mm // G
    qh = h * G + mm % G
    row_ok = t < T
    dd = tl.arange(0, D_PAD)
    dm = dd < D
    nn = tl.arange(0, BLOCK_N)
    q = tl.load(q_ptr + t[:, None] * s_qt + qh[:, None] * s_qh + dd[None, :], mask=row_ok[:, None] & dm[None, :], other=0.0)
    seq = tl.load(seq_ptr + t, mask=row_ok, other=0)  # tokens visible to each row's query
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    for u in range(split * UNITS, split * UNITS + UNITS):
        blk = u // SUB
        part = u % SUB
        phys = tl.load(bt_ptr + tl.minimum(blk, NB - 1))
        count = PAGE_C
        if HAS_PLEN:
            count = tl.minimum(count, tl.load(plen_ptr + phys))
        count = tl.where(blk < NB, count, 0)
        tok = part * BLOCK_N + nn
        in_page = tok < count
        k = tl.load(k_ptr + phys * s_kp + h * s_kh + tok[:, None] * s_kt + dd[None, :], mask=in_page[:, None] & dm[None, :], other=0.0)
        v = tl.load(v_ptr + phys * s_vp + h * s_vh + tok[:, None] * s_vt + dd[None, :], mask=in_page[:, None] & dm[None, :], other=0.0)
        s = _dot(q.to(k.dtype), tl.trans(k), IEEE)
        vis = in_page[None, :] & ((blk * PAGE_C + tok)[None, :] < seq[:, None])
        s = tl.where(vis, s * qk_scale, float("-inf"))
        m_i, alpha, p, l_i = _softmax_step(s, m_i, l_i)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
    out, lse2 = _softmax_finish(acc, m_i, l_i)
    if DIRECT:
        tl.store(o_ptr + t[:, None] * s_ot + qh[:, None] * s_oh + dd[None, :], out.to(o_ptr.dtype.element_ty), mask=row_ok[:, None] & dm[None, :])
        tl.store(lse_ptr + t * s_lt + qh * s_lh, lse2 * 0.6931471805599453, mask=row_ok)
    else:
        tl.store(o_ptr + t[:, None] * s_ot + qh[:, None] * s_oh + split * s_os + dd[None, :], out, mask=row_ok[:, None] & dm[None, :])
        tl.store(lse_ptr + t * s_lt + qh * s_lh + split, lse2, mask=row_ok)


def dense_prefill(q, k_cache, v_cache, block_table, positions, *, scale=None, page_lens=None, return_lse=False,
                  block_m=64, block_n=64, splits=None, num_warps=4, num_stages=2):
    """Triton version of `reference.dense_prefill`. q [T, Hq, d]; block_table [max_blocks] int32 shared by every
    query; positions [T] (query t sees logical tokens <= positions[t]). splits None: enough page ranges that the
    launch has about TARGET_PROGRAMS programs (at most one per page part). Returns out [T, Hq, d] in q's dtype (and
    fp32 lse [T, Hq], natural log, -inf where nothing is visible)."""
    T, Hq, D = q.shape
    Hkv = k_cache.shape[1]
    assert block_table.dim() == 1 and block_table.stride(0) == 1, "one shared, contiguous block table"
    assert Hq % Hkv == 0 and k_cache.shape[2] == PAGE and k_cache.shape[3] == D and PAGE % block_n == 0
    assert k_cache.stride(3) == 1 and v_cache.stride(3) == 1 and q.stride(2) == 1
    G = Hq // Hkv
    block_m = max(16, triton.next_power_of_2(max(block_m, G)))
    nb = block_table.shape[0]
    units = max(1, nb * (PAGE // block_n))
    tiles = triton.cdiv(T * G, block_m)
    if splits is None:
        splits = triton.cdiv(TARGET_PROGRAMS, max(1, tiles * Hkv))
    per_split = triton.cdiv(units, max(1, min(splits, units)))
    splits = triton.cdiv(units, per_split)
    scale = D**-0.5 if scale is None else scale
    out = torch.empty(T, Hq, D, device=q.device, dtype=q.dtype)
    lse = torch.empty(T, Hq, device=q.device, dtype=torch.float32)
    if T == 0:
        return (out, lse) if return_lse else out
    seq = positions.to(torch.int32) + 1
    direct = splits == 1
    po, plse, s_os = split_partials(out, lse, splits)
    _dense_prefill_kernel[(tiles * Hkv, splits)](
        q, k_cache, v_cache, block_table, seq, page_lens if page_lens is not None else seq, po, plse,
        T, Hkv, nb, per_split, scale * LOG2E,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        po.stride(0), po.stride(1), s_os, plse.stride(0), plse.stride(1),
        G=G, BLOCK_M=block_m, D=D, D_PAD=max(16, triton.next_power_of_2(D)), BLOCK_N=block_n, SUB=PAGE // block_n,
        HAS_PLEN=page_lens is not None, DIRECT=direct, IEEE=k_cache.dtype == torch.float32,
        num_warps=num_warps, num_stages=num_stages,
    )
    if not direct:
        merge_splits(po, plse, out, lse)
    return (out, lse) if return_lse else out
