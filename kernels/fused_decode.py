"""Fused Triton decode path: two launches per layer instead of five, and fp8 K/V pages.

Launch 1, `summary_topk`: each program scores a chunk of pages from the page summaries (Quest min/max or
mean; read in slices of the head dim so all loads are in flight together), keeps the chunk's best keys (bitonic top-k over order-preserving int64 keys, as in `kernels.topk`), then
bumps an atomic counter of its (row, group); the last program to arrive merges every chunk's candidates, lays
out the selection (local block last, ties to the lower id, padding -1) and resolves it through the block table
into physical pages and visible counts. It resets the counter, so the next launch (or graph replay) starts at 0.
Launch 2, `sparse_decode_merged`: the flash-decoding splits of `kernels.sparse_decode`, reading K/V pages in
bf16/fp16 or float8_e4m3fn with one fp32 scale per (page, KV head) folded into the scores and the P·V product;
the last split of each (row, group) to arrive merges the partials by log-sum-exp in the same launch.
Counters live in a per-device buffer made on the first (uncaptured) call; grids and buffers depend only on
shapes, so both launches capture in a CUDA graph. Any head dim works: tiles are padded to a power of two and
masked. Semantics: `kernels.reference` (topk_blocks, sparse_decode with k_scale/v_scale). Not here: the unfused
kernels (kept for comparison), fp8 quantisation (`kernels.fp8_kv`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from kernels.launch_configs import launch_config
from kernels.topk import _layout, _pack
from kernels.sparse_decode import _dot, _softmax_finish, _softmax_step

PAGE = 128
PAGE_C = tl.constexpr(PAGE)  # the page size inside kernels
LOG2E = 1.4426950408889634
_counters: dict[tuple, torch.Tensor] = {}
_outgrown: list[torch.Tensor] = []  # smaller counter buffers stay alive: a captured graph may still point at one


def counters(device: torch.device, n: int, kind: str) -> torch.Tensor:
    """Zeroed int32 arrival counters (every kernel leaves them at 0). Made outside graph capture, then reused."""
    key = (str(device), kind)
    buf = _counters.get(key)
    if buf is None or buf.numel() < n:
        if torch.cuda.is_available() and torch.device(device).type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError("fused decode kernels need one call before CUDA-graph capture (to make their counters)")
        if buf is not None:
            _outgrown.append(buf)
        buf = torch.zeros(max(n, 256), dtype=torch.int32, device=device)
        _counters[key] = buf
    return buf


@triton.jit
def _summary_topk_kernel(
    q_ptr, hi_ptr, lo_ptr, bt_ptr, seq_ptr, plen_ptr, score_ptr, cand_ptr, cnt_ptr, sel_ptr, phys_ptr, vis_ptr,
    HKV, NB, NCH,
    s_qb, s_qh, s_sp, s_sh, s_btb, s_ob, s_oh, s_cb, s_ch, s_rb, s_rh,
    G: tl.constexpr, D: tl.constexpr, CH: tl.constexpr, DC: tl.constexpr, MINMAX: tl.constexpr,
    HAS_PLEN: tl.constexpr, NP: tl.constexpr, NP_PAD: tl.constexpr, NC_PAD: tl.constexpr,
    K: tl.constexpr, K_PAD: tl.constexpr, LOCAL: tl.constexpr, SINK: tl.constexpr, TRIGGER: tl.constexpr,
):
    """Program (row*HKV + group, chunk of CH pages): the chunk's summaries are read in DC-dim slices, with no
    store in between, so every slice's loads can be in flight at once; its scores stay in registers."""
    pid = tl.program_id(0)
    row = pid // HKV
    h = pid % HKV
    c = tl.program_id(1)
    seq = tl.load(seq_ptr + row)
    L = tl.where(seq > 0, (seq - 1) // PAGE_C, -1)
    blk = c * CH + tl.arange(0, CH)
    in_table = blk < NB
    need = in_table & (blk < L)  # history blocks only; the rest is never read
    phys = tl.load(bt_ptr + row * s_btb + blk, mask=need, other=0)
    s = tl.zeros([CH], tl.float32)
    for d0 in tl.static_range(0, D, DC):  # DC a power of two; a last partial slice is masked
        dd = d0 + tl.arange(0, DC)
        dm = dd < D
        qp = tl.zeros([DC], tl.float32)
        qn = tl.zeros([DC], tl.float32)
        for g in tl.static_range(G):
            qg = tl.load(q_ptr + row * s_qb + (h * G + g) * s_qh + dd, mask=dm, other=0.0).to(tl.float32)
            if MINMAX:
                qp += tl.maximum(qg, 0.0)
                qn += tl.minimum(qg, 0.0)
            else:
                qp += qg
        offs = phys[:, None] * s_sp + h * s_sh + dd[None, :]
        khi = tl.load(hi_ptr + offs, mask=need[:, None] & dm[None, :], other=0.0).to(tl.float32)
        s += tl.sum(khi * qp[None, :], axis=1)
        if MINMAX:
            klo = tl.load(lo_ptr + offs, mask=need[:, None] & dm[None, :], other=0.0).to(tl.float32)
            s += tl.sum(klo * qn[None, :], axis=1)
    ok = need
    if HAS_PLEN:
        ok = ok & (tl.load(plen_ptr + phys, mask=need, other=0) > 0)
    s = tl.where(ok, s, float("-inf"))
    tl.store(score_ptr + row * s_ob + h * s_oh + blk, s, mask=in_table)
    cand_ok = (blk >= SINK) & (blk < L - LOCAL + 1) & (blk < NB)
    s = tl.where(cand_ok, s, float("-inf"))
    _merge_and_resolve(tl.topk(_pack(s, blk), NP_PAD), cand_ptr, cnt_ptr, bt_ptr, plen_ptr, sel_ptr, phys_ptr, vis_ptr,
                       pid, row, h, c, seq, L, NCH, s_btb, s_cb, s_ch, s_rb, s_rh,
                       HAS_PLEN, NP, NP_PAD, NC_PAD, K, K_PAD, LOCAL, SINK, TRIGGER)


@triton.jit
def _merge_and_resolve(top, cand_ptr, cnt_ptr, bt_ptr, plen_ptr, sel_ptr, phys_ptr, vis_ptr,
                       pid, row, h, c, seq, L, NCH, s_btb, s_cb, s_ch, s_rb, s_rh,
                       HAS_PLEN: tl.constexpr, NP: tl.constexpr, NP_PAD: tl.constexpr, NC_PAD: tl.constexpr,
                       K: tl.constexpr, K_PAD: tl.constexpr, LOCAL: tl.constexpr, SINK: tl.constexpr, TRIGGER: tl.constexpr):
    """A chunk program's best keys `top` [NP_PAD] join its (row, group)'s candidates; the last of the NCH chunk
    programs to arrive merges them, lays out the selection, resolves it into physical pages and visible counts, and
    resets the counter."""
    tl.store(cand_ptr + row * s_cb + h * s_ch + c * NP_PAD + tl.arange(0, NP_PAD), top)
    if TRIGGER:  # a dependent launched with programmatic dependent launch may start (it waits for our end)
        gdc_launch_dependents()
    tl.debug_barrier()  # every thread's candidates are written before the release below
    arrived = tl.atomic_add(cnt_ptr + pid, 1, sem="acq_rel", scope="gpu")
    if arrived == NCH - 1:
        idx = tl.arange(0, NC_PAD * NP_PAD)
        cands = tl.load(cand_ptr + row * s_cb + h * s_ch + idx, mask=idx < NCH * NP_PAD,
                        other=-9223372036854775807 - 1, cache_modifier=".cg")
        sel = _layout(tl.topk(cands, NP_PAD), L, K, K_PAD, NP, NP_PAD, LOCAL, SINK)
        kslot = tl.arange(0, K_PAD)
        kmask = kslot < K
        used = sel >= 0
        # (names new to this branch: a branch may not retype a variable defined before it)
        sel_pages = tl.load(bt_ptr + row * s_btb + tl.maximum(sel, 0), mask=kmask & used, other=0)
        sel_counts = tl.minimum(seq - sel * PAGE_C, PAGE_C)
        if HAS_PLEN:
            sel_counts = tl.minimum(sel_counts, tl.load(plen_ptr + sel_pages, mask=kmask & used, other=0))
        sel_counts = tl.where(used, tl.maximum(sel_counts, 0), 0)
        tl.store(sel_ptr + row * s_rb + h * s_rh + kslot, sel, mask=kmask)
        tl.store(phys_ptr + row * s_rb + h * s_rh + kslot, sel_pages, mask=kmask)
        tl.store(vis_ptr + row * s_rb + h * s_rh + kslot, sel_counts, mask=kmask)
        tl.atomic_xchg(cnt_ptr + pid, 0)


def summary_topk(q, kmin, kmax, block_table, seq_lens, k=16, *, kmean=None, mode="minmax", page_lens=None,
                 local_blocks=1, sink_blocks=0, block_pages=None, dim_chunk=None, num_warps=None, trigger=False):
    """Summary scores and top-k blocks in one launch.

    Same inputs as `reference.summary_block_scores` plus k / local_blocks / sink_blocks of `reference.topk_blocks`.
    Returns (scores fp32 [B, Hkv, max_blocks], selected int32 [B, Hkv, k], pages int32 [B, Hkv, k] physical page of
    each selected block (0 where unused), counts int32 [B, Hkv, k] its visible tokens (0 where unused)).
    trigger=True lets a following `sparse_decode_merged(pdl=True)` start early (CUDA only, sm_90+). Launch parameters
    left None come from `kernels.launch_configs` ("fused_topk").
    """
    cfg = launch_config("fused_topk", q.device, block_pages=block_pages, dim_chunk=dim_chunk, num_warps=num_warps)
    block_pages, dim_chunk, num_warps = cfg["block_pages"], cfg["dim_chunk"], cfg["num_warps"]
    assert mode in ("minmax", "mean"), mode
    B, Hq, D = q.shape
    hi, lo = (kmax, kmin) if mode == "minmax" else (kmean, kmean)
    assert hi is not None and lo is not None, f"mode={mode!r} needs its summaries"
    Hkv = hi.shape[1]
    assert hi.stride(2) == 1 and lo.stride() == hi.stride() and q.stride(2) == 1 and block_table.stride(1) == 1
    assert k > sink_blocks + local_blocks - 1 and local_blocks >= 1, (k, sink_blocks, local_blocks)
    NB = block_table.shape[1]
    assert block_pages & (block_pages - 1) == 0 and dim_chunk & (dim_chunk - 1) == 0, (block_pages, dim_chunk)
    n_pick = k - sink_blocks - local_blocks
    np_pad = triton.next_power_of_2(max(n_pick, 1))
    block_pages = max(np_pad, min(block_pages, triton.next_power_of_2(NB)))
    dim_chunk = min(dim_chunk, triton.next_power_of_2(D))
    n_chunks = triton.cdiv(NB, block_pages)
    dev = q.device
    scores = torch.empty(B, Hkv, NB, device=dev, dtype=torch.float32)
    cand = torch.empty(B, Hkv, n_chunks * np_pad, device=dev, dtype=torch.int64)
    sel, pages, counts = (torch.empty(B, Hkv, k, device=dev, dtype=torch.int32) for _ in range(3))
    seq = seq_lens.to(torch.int32)
    _summary_topk_kernel[(B * Hkv, n_chunks)](
        q, hi, lo, block_table, seq, page_lens if page_lens is not None else seq, scores, cand,
        counters(dev, B * Hkv, "topk"), sel, pages, counts,
        Hkv, NB, n_chunks,
        q.stride(0), q.stride(1), hi.stride(0), hi.stride(1), block_table.stride(0), scores.stride(0), scores.stride(1),
        cand.stride(0), cand.stride(1), sel.stride(0), sel.stride(1),
        G=Hq // Hkv, D=D, CH=block_pages, DC=dim_chunk, MINMAX=mode == "minmax", HAS_PLEN=page_lens is not None,
        NP=n_pick, NP_PAD=np_pad, NC_PAD=triton.next_power_of_2(n_chunks), K=k, K_PAD=triton.next_power_of_2(k),
        LOCAL=local_blocks, SINK=sink_blocks, TRIGGER=trigger, num_warps=num_warps,
    )
    return scores, sel, pages, counts


@triton.jit
def _attn_merge_kernel(
    q_ptr, k_ptr, v_ptr, ks_ptr, vs_ptr, bt_ptr, seq_ptr, plen_ptr, sel_ptr, phys_ptr, vis_ptr,
    po_ptr, plse_ptr, cnt_ptr, o_ptr, lse_ptr,
    HKV, NSEL, NS, qk_scale,
    s_qb, s_qh, s_kp, s_kh, s_kt, s_vp, s_vh, s_vt, s_sp, s_sh, s_btb, s_rb, s_rh,
    s_pb, s_ph, s_ps, s_lb, s_lh, s_ls, s_ob, s_oh, s_fb, s_fh,
    G: tl.constexpr, G_PAD: tl.constexpr, MG: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
    SUB: tl.constexpr, UNITS: tl.constexpr, NS_PAD: tl.constexpr, SC: tl.constexpr,
    RESOLVED: tl.constexpr, HAS_PLEN: tl.constexpr, SCALED: tl.constexpr, IEEE: tl.constexpr, DIRECT: tl.constexpr,
    PDL: tl.constexpr,
):
    """Program (row*HKV + group, split): UNITS page parts of BLOCK_N tokens; the last split to finish merges."""
    pid = tl.program_id(0)
    row = pid // HKV
    h = pid % HKV
    split = tl.program_id(1)
    gg = tl.arange(0, G_PAD)
    dd = tl.arange(0, D_PAD)
    dm = dd < D  # head dims padded up to a power of two are masked
    nn = tl.arange(0, BLOCK_N)
    qh = h * G + gg
    q = tl.load(q_ptr + row * s_qb + qh[:, None] * s_qh + dd[None, :], mask=(gg[:, None] < G) & dm[None, :], other=0.0)
    if not SCALED:
        q = q.to(k_ptr.dtype.element_ty)  # bf16/fp16/fp32 pages: the dot runs in the cache's dtype
    if PDL:  # launched early: everything below (reads of the selection, every write) waits for the previous launch
        gdc_wait()
    seq = tl.load(seq_ptr + row)
    m_i = tl.full([G_PAD], -1.0e30, tl.float32)
    l_i = tl.zeros([G_PAD], tl.float32)
    acc = tl.zeros([G_PAD, D_PAD], tl.float32)
    for u in range(split * UNITS, split * UNITS + UNITS):
        slot = u // SUB
        part = u % SUB
        if RESOLVED:
            phys = tl.load(phys_ptr + row * s_rb + h * s_rh + slot, mask=slot < NSEL, other=0)
            count = tl.load(vis_ptr + row * s_rb + h * s_rh + slot, mask=slot < NSEL, other=0)
        else:
            blk = tl.load(sel_ptr + row * s_rb + h * s_rh + slot, mask=slot < NSEL, other=-1)
            phys = tl.load(bt_ptr + row * s_btb + tl.maximum(blk, 0))
            count = tl.minimum(seq - blk * PAGE_C, PAGE_C)
            if HAS_PLEN:
                count = tl.minimum(count, tl.load(plen_ptr + phys))
            count = tl.where(blk >= 0, count, 0)
        tok = part * BLOCK_N + nn
        vis = tok < count
        k = tl.load(k_ptr + phys * s_kp + h * s_kh + tok[:, None] * s_kt + dd[None, :], mask=vis[:, None] & dm[None, :], other=0.0)
        v = tl.load(v_ptr + phys * s_vp + h * s_vh + tok[:, None] * s_vt + dd[None, :], mask=vis[:, None] & dm[None, :], other=0.0)
        k = k.to(q.dtype)
        v = v.to(q.dtype)
        s = _dot(q, tl.trans(k), IEEE)
        if SCALED:
            s = s * (qk_scale * tl.load(ks_ptr + phys * s_sp + h * s_sh))
        else:
            s = s * qk_scale
        s = tl.where(vis[None, :], s, float("-inf"))
        m_i, alpha, p, l_i = _softmax_step(s, m_i, l_i)
        pv = _dot(p.to(q.dtype), v, IEEE)
        if SCALED:
            pv = pv * tl.load(vs_ptr + phys * s_sp + h * s_sh)
        acc = acc * alpha[:, None] + pv
    out, lse2 = _softmax_finish(acc, m_i, l_i)
    gmask = gg < G
    if DIRECT:  # one split: no partials, no merge
        tl.store(o_ptr + row * s_ob + qh[:, None] * s_oh + dd[None, :], out.to(o_ptr.dtype.element_ty), mask=gmask[:, None] & dm[None, :])
        tl.store(lse_ptr + row * s_fb + qh * s_fh, lse2 * 0.6931471805599453, mask=gmask)
    else:
        tl.store(po_ptr + row * s_pb + qh[:, None] * s_ph + split * s_ps + dd[None, :], out, mask=gmask[:, None] & dm[None, :])
        tl.store(plse_ptr + row * s_lb + qh * s_lh + split * s_ls, lse2, mask=gmask)
        tl.debug_barrier()  # every thread's partial is written before the release below
        arrived = tl.atomic_add(cnt_ptr + pid, 1, sem="acq_rel", scope="gpu")
        if arrived == NS - 1:
            mg = tl.arange(0, MG)
            mh = h * G + mg
            ss = tl.arange(0, NS_PAD)
            lse_all = tl.load(plse_ptr + row * s_lb + mh[:, None] * s_lh + ss[None, :] * s_ls,
                              mask=(mg[:, None] < G) & (ss[None, :] < NS), other=float("-inf"), cache_modifier=".cg")
            m = tl.max(lse_all, axis=1)
            m = tl.where(m == float("-inf"), 0.0, m)
            den = tl.sum(tl.exp2(lse_all - m[:, None]), axis=1)
            tot = tl.zeros([MG, D_PAD], tl.float32)
            for s0 in range(0, NS, SC):
                sc = s0 + tl.arange(0, SC)
                ok = (mg[:, None] < G) & (sc[None, :] < NS)
                w = tl.exp2(tl.load(plse_ptr + row * s_lb + mh[:, None] * s_lh + sc[None, :] * s_ls, mask=ok,
                                    other=float("-inf"), cache_modifier=".cg") - m[:, None])
                piece = tl.load(po_ptr + row * s_pb + mh[:, None, None] * s_ph + sc[None, :, None] * s_ps + dd[None, None, :],
                               mask=ok[:, :, None] & dm[None, None, :], other=0.0, cache_modifier=".cg")
                tot += tl.sum(piece * w[:, :, None], axis=1)
            nonzero = den > 0
            fin = tot / tl.where(nonzero, den, 1.0)[:, None]
            tl.store(o_ptr + row * s_ob + mh[:, None] * s_oh + dd[None, :], fin.to(o_ptr.dtype.element_ty), mask=(mg < G)[:, None] & dm[None, :])
            tl.store(lse_ptr + row * s_fb + mh * s_fh,
                     tl.where(nonzero, (m + tl.log2(tl.where(nonzero, den, 1.0))) * 0.6931471805599453, float("-inf")), mask=mg < G)
            tl.atomic_xchg(cnt_ptr + pid, 0)


def sparse_decode_merged(q, k_cache, v_cache, block_table, seq_lens, selected, *, scale=None, page_lens=None,
                         return_lse=False, k_scale=None, v_scale=None, pages=None, counts=None,
                         block_n=None, units_per_split=None, merge_splits=4, num_warps=None, num_stages=None, pdl=False):
    """`reference.sparse_decode` in one launch (splits merged in-kernel by the last one to finish).

    k_cache/v_cache bf16, fp16, fp32 or float8_e4m3fn; fp8 needs k_scale and v_scale fp32 [num_pages, Hkv] (value =
    stored * scale) and q in bf16/fp16. pages/counts from `summary_topk` skip the block-table and length look-ups
    (selected then only documents the choice). pdl=True launches it with programmatic dependent launch (CUDA,
    sm_90+): it loads q while the previous launch finishes. Returns out [B, Hq, d] in q's dtype (and fp32 lse [B, Hq]).
    Launch parameters left None come from `kernels.launch_configs` ("fused_decode"; its "pdl" is the pair's).
    """
    cfg = launch_config("fused_decode", q.device, block_n=block_n, units_per_split=units_per_split, num_warps=num_warps,
                        num_stages=num_stages)
    block_n, units_per_split, num_warps, num_stages = cfg["block_n"], cfg["units_per_split"], cfg["num_warps"], cfg["num_stages"]
    B, Hq, D = q.shape
    Hkv = k_cache.shape[1]
    nsel = selected.shape[-1]
    assert Hq % Hkv == 0 and k_cache.shape[2] == PAGE and k_cache.shape[3] == D and PAGE % block_n == 0
    assert k_cache.stride(3) == 1 and v_cache.stride(3) == 1 and q.stride(2) == 1
    assert block_table.stride(1) == 1 and selected.stride(2) == 1
    scaled = k_cache.dtype == torch.float8_e4m3fn
    assert scaled == (v_cache.dtype == torch.float8_e4m3fn), "K and V pages must both be fp8 or neither"
    if scaled:
        assert k_scale is not None and v_scale is not None, "fp8 pages need k_scale and v_scale"
        assert k_scale.shape == (k_cache.shape[0], Hkv) and v_scale.stride() == k_scale.stride() and k_scale.dtype == torch.float32
        assert q.dtype in (torch.bfloat16, torch.float16), "fp8 K/V are computed in q's dtype: bf16 or fp16"
    resolved = pages is not None
    if resolved:
        assert counts is not None and pages.stride() == counts.stride() == selected.stride()
    G = Hq // Hkv
    units = nsel * (PAGE // block_n)
    units_per_split = min(units_per_split, units)
    splits = triton.cdiv(units, units_per_split)
    scale = D**-0.5 if scale is None else scale
    dev = q.device
    out = torch.empty(B, Hq, D, device=dev, dtype=q.dtype)
    lse = torch.empty(B, Hq, device=dev, dtype=torch.float32)
    if splits > 1:
        po = torch.empty(B, Hq, splits, D, device=dev, dtype=torch.float32)
        plse = torch.empty(B, Hq, splits, device=dev, dtype=torch.float32)
        cnt = counters(dev, B * Hkv, "attn")
    else:
        po, plse, cnt = out, lse, None
    seq = seq_lens.to(torch.int32)
    cnt = seq if cnt is None else cnt
    ks = k_scale if scaled else seq
    vs = v_scale if scaled else seq
    res_p, res_c = (pages, counts) if resolved else (selected, selected)
    _attn_merge_kernel[(B * Hkv, splits)](
        q, k_cache, v_cache, ks, vs, block_table, seq, page_lens if page_lens is not None else seq, selected, res_p, res_c,
        po, plse, cnt, out, lse,
        Hkv, nsel, splits, scale * LOG2E,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        ks.stride(0) if scaled else 0, ks.stride(1) if scaled else 0, block_table.stride(0), selected.stride(0), selected.stride(1),
        po.stride(0), po.stride(1), po.stride(2) if splits > 1 else 0, plse.stride(0), plse.stride(1), plse.stride(2) if splits > 1 else 0,
        out.stride(0), out.stride(1), lse.stride(0), lse.stride(1),
        G=G, G_PAD=max(16, triton.next_power_of_2(G)), MG=max(2, triton.next_power_of_2(G)), D=D, D_PAD=max(16, triton.next_power_of_2(D)), BLOCK_N=block_n,
        SUB=PAGE // block_n, UNITS=units_per_split, NS_PAD=max(2, triton.next_power_of_2(splits)),
        SC=max(2, min(merge_splits, triton.next_power_of_2(splits))), RESOLVED=resolved, HAS_PLEN=page_lens is not None,
        SCALED=scaled, IEEE=k_cache.dtype == torch.float32, DIRECT=splits == 1, PDL=pdl, num_warps=num_warps, num_stages=num_stages,
        **({"launch_pdl": True} if pdl else {}),
    )
    return (out, lse) if return_lse else out


def summary_sparse_decode(q, kmin, kmax, k_cache, v_cache, block_table, seq_lens, k=16, *, kmean=None, mode="minmax",
                          scale=None, page_lens=None, return_lse=False, k_scale=None, v_scale=None,
                          topk_cfg=None, decode_cfg=None):
    """One decode step of a layer from page summaries in two launches: (out[, lse], selected).

    topk_cfg / decode_cfg: launch parameters of `summary_topk` / `sparse_decode_merged`; what they leave out comes
    from `kernels.launch_configs`, and programmatic dependent launch between the two follows decode_cfg["pdl"]
    (default: the table's "fused_decode" pdl) unless topk_cfg sets "trigger" itself.
    """
    decode_cfg = dict(decode_cfg or {})
    if decode_cfg.get("pdl") is None:
        decode_cfg["pdl"] = launch_config("fused_decode", q.device)["pdl"]
    topk_cfg = {"trigger": decode_cfg["pdl"], **(topk_cfg or {})}
    _, sel, pages, counts = summary_topk(q, kmin, kmax, block_table, seq_lens, k, kmean=kmean, mode=mode,
                                         page_lens=page_lens, **topk_cfg)
    res = sparse_decode_merged(q, k_cache, v_cache, block_table, seq_lens, sel, scale=scale, page_lens=page_lens,
                               return_lse=return_lse, k_scale=k_scale, v_scale=v_scale, pages=pages, counts=counts,
                               **decode_cfg)
    return (*res, sel) if return_lse else (res, sel)
