"""Triton block scoring for one decode step (or a chunk of prefill queries): M3 index keys and page summaries.

Index scores: max over each 128-token page of q_idx·k_idx per index head, one tensor-core dot per page.
Summary scores: Quest's bound sum_d max(q*kmin, q*kmax) summed over a group's query heads equals
Qp·kmax + Qn·kmin with Qp = sum_g relu(q_g), Qn = sum_g min(q_g, 0) (kmax >= kmin), so both summary modes
are one fp32 GEMV per group over the pages. Semantics and shapes: `kernels.reference` (same names).
Rows whose block table is shared (stride 0, e.g. `reference.prefill_rows`) are scored in tiles that read
each page once. Not here: top-k (`kernels.topk`), the attention itself.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.launch_configs import launch_config

PAGE = 128
PAGE_C = tl.constexpr(PAGE)  # the page size inside kernels


@triton.jit
def _index_scores_kernel(
    q_ptr, k_ptr, bt_ptr, seq_ptr, plen_ptr, out_ptr,
    B, NB,
    s_qb, s_qh, s_kp, s_kt, s_btb, s_ob, s_oh,
    H: tl.constexpr, H_PAD: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr, ROWS: tl.constexpr, M: tl.constexpr,
    PAGES: tl.constexpr, HAS_PLEN: tl.constexpr, IEEE: tl.constexpr,
):
    """Program (row tile, page chunk): rows [ROWS*pid0, +ROWS) share one block table (ROWS > 1 only then)."""
    row0 = tl.program_id(0) * ROWS
    b0 = tl.program_id(1) * PAGES
    r = tl.arange(0, M)  # tile row = (row, head)
    rr = row0 + r // H_PAD
    hh = r % H_PAD
    rvalid = (r < ROWS * H_PAD) & (rr < B) & (hh < H)
    seq = tl.load(seq_ptr + rr, mask=rvalid, other=0)
    local = tl.where(seq > 0, (seq - 1) // PAGE_C, -1)
    dd = tl.arange(0, D_PAD)
    dm = dd < D  # index dims padded up to a power of two are masked
    q = tl.load(q_ptr + rr[:, None] * s_qb + hh[:, None] * s_qh + dd[None, :], mask=rvalid[:, None] & dm[None, :], other=0.0)
    tok = tl.arange(0, PAGE_C)
    hi = tl.minimum(b0 + PAGES, tl.max(local, 0))  # blocks below every row's local block bound the loop
    hi = tl.minimum(hi, NB)
    for b in range(b0, hi):
        phys = tl.load(bt_ptr + row0 * s_btb + b)
        k = tl.load(k_ptr + phys * s_kp + tok[:, None] * s_kt + dd[None, :], mask=dm[None, :], other=0.0)  # [PAGE_C, D_PAD]
        if IEEE:
            s = tl.dot(q.to(k.dtype), tl.trans(k), input_precision="ieee")  # [M, PAGE_C]
        else:
            s = tl.dot(q.to(k.dtype), tl.trans(k))
        vis = (b * PAGE_C + tok[None, :]) < seq[:, None]
        if HAS_PLEN:
            vis = vis & (tok[None, :] < tl.load(plen_ptr + phys))
        s = tl.where(vis, s, float("-inf"))
        best = tl.max(s, axis=1)
        best = tl.where(b < local, best, float("-inf"))
        tl.store(out_ptr + rr * s_ob + hh * s_oh + b, best, mask=rvalid)
    # the rest of the chunk (local block and beyond for at least one row of the tile) is -inf
    for b in range(tl.maximum(hi, b0), tl.minimum(b0 + PAGES, NB)):
        tl.store(out_ptr + rr * s_ob + hh * s_oh + b, tl.full([M], float("-inf"), tl.float32), mask=rvalid)


@triton.jit
def _summary_scores_kernel(
    q_ptr, hi_ptr, lo_ptr, bt_ptr, seq_ptr, plen_ptr, out_ptr,
    B, NB,
    s_qb, s_qh, s_sp, s_sh, s_btb, s_ob, s_oh,
    G: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr, ROWS: tl.constexpr, BLOCK_P: tl.constexpr,
    MINMAX: tl.constexpr, HAS_PLEN: tl.constexpr,
):
    """Program (row tile, kv head, page chunk): scores of BLOCK_P pages for ROWS rows (shared table if ROWS > 1)."""
    row0 = tl.program_id(0) * ROWS
    h = tl.program_id(1)
    blk = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    in_table = blk < NB
    dd = tl.arange(0, D_PAD)
    dm = dd < D  # head dims padded up to a power of two are masked
    phys = tl.load(bt_ptr + row0 * s_btb + blk, mask=in_table, other=0)
    # pages beyond every row's history are never read
    seq_max = tl.load(seq_ptr + row0)
    for i in tl.static_range(1, ROWS):
        seq_max = tl.maximum(seq_max, tl.load(seq_ptr + tl.minimum(row0 + i, B - 1)))
    need = in_table & (blk < (seq_max - 1) // PAGE_C)
    offs = phys[:, None] * s_sp + h * s_sh + dd[None, :]
    khi = tl.load(hi_ptr + offs, mask=need[:, None] & dm[None, :], other=0.0).to(tl.float32)  # kmax or kmean [BLOCK_P, D]
    if MINMAX:
        klo = tl.load(lo_ptr + offs, mask=need[:, None] & dm[None, :], other=0.0).to(tl.float32)
    if HAS_PLEN:
        plen = tl.load(plen_ptr + phys, mask=need, other=0)
    for i in tl.static_range(ROWS):
        row = row0 + i
        if row < B:
            seq = tl.load(seq_ptr + row)
            qp = tl.zeros([D_PAD], tl.float32)
            qn = tl.zeros([D_PAD], tl.float32)
            for g in tl.static_range(G):
                qg = tl.load(q_ptr + row * s_qb + (h * G + g) * s_qh + dd, mask=dm, other=0.0).to(tl.float32)
                if MINMAX:
                    qp += tl.maximum(qg, 0.0)
                    qn += tl.minimum(qg, 0.0)
                else:
                    qp += qg
            s = tl.sum(khi * qp[None, :], axis=1)
            if MINMAX:
                s += tl.sum(klo * qn[None, :], axis=1)
            ok = blk < (seq - 1) // PAGE_C
            ok = ok & (blk * PAGE_C < seq)
            if HAS_PLEN:
                ok = ok & (plen > 0)
            s = tl.where(ok, s, float("-inf"))
            tl.store(out_ptr + row * s_ob + h * s_oh + blk, s, mask=in_table)


def _shared_rows(block_table: torch.Tensor) -> bool:
    return block_table.shape[0] > 1 and block_table.stride(0) == 0


def index_block_scores(q_idx, index_k_cache, block_table, seq_lens, page_lens=None, *, pages_per_program=None, num_warps=None,
                       num_stages=None):
    """Triton version of `reference.index_block_scores`; q_idx is cast to the cache's dtype for the dot.
    Launch parameters left None come from `kernels.launch_configs` ("index")."""
    cfg = launch_config("index", q_idx.device, pages_per_program=pages_per_program, num_warps=num_warps, num_stages=num_stages)
    pages_per_program = cfg["pages_per_program"]
    B, H, D = q_idx.shape
    assert index_k_cache.shape[1] == PAGE and index_k_cache.shape[2] == D and index_k_cache.stride(2) == 1
    assert q_idx.stride(2) == 1 and block_table.stride(1) == 1
    NB = block_table.shape[1]
    out = torch.empty(B, H, NB, device=q_idx.device, dtype=torch.float32)
    h_pad = triton.next_power_of_2(H)
    rows = max(1, 64 // h_pad) if _shared_rows(block_table) else 1
    m = max(16, triton.next_power_of_2(rows * h_pad))
    seq = seq_lens.to(torch.int32)
    grid = (triton.cdiv(B, rows), triton.cdiv(NB, pages_per_program))
    _index_scores_kernel[grid](
        q_idx, index_k_cache, block_table, seq, page_lens if page_lens is not None else seq, out,
        B, NB,
        q_idx.stride(0), q_idx.stride(1), index_k_cache.stride(0), index_k_cache.stride(1), block_table.stride(0),
        out.stride(0), out.stride(1),
        H=H, H_PAD=h_pad, D=D, D_PAD=max(16, triton.next_power_of_2(D)), ROWS=rows, M=m, PAGES=pages_per_program,
        HAS_PLEN=page_lens is not None, IEEE=index_k_cache.dtype == torch.float32,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    return out


def summary_block_scores(q, kmin, kmax, block_table, seq_lens, *, kmean=None, mode="minmax", page_lens=None, block_pages=None,
                         num_warps=None):
    """Triton version of `reference.summary_block_scores` (fp32 arithmetic on the stored summaries).
    Launch parameters left None come from `kernels.launch_configs` ("summary")."""
    cfg = launch_config("summary", q.device, block_pages=block_pages, num_warps=num_warps)
    block_pages = cfg["block_pages"]
    assert mode in ("minmax", "mean"), mode
    B, Hq, D = q.shape
    hi, lo = (kmax, kmin) if mode == "minmax" else (kmean, kmean)
    assert hi is not None and lo is not None, f"mode={mode!r} needs its summaries"
    Hkv = hi.shape[1]
    assert hi.stride(2) == 1 and lo.stride() == hi.stride() and q.stride(2) == 1 and block_table.stride(1) == 1
    NB = block_table.shape[1]
    out = torch.empty(B, Hkv, NB, device=q.device, dtype=torch.float32)
    rows = 8 if _shared_rows(block_table) else 1
    seq = seq_lens.to(torch.int32)
    grid = (triton.cdiv(B, rows), Hkv, triton.cdiv(NB, block_pages))
    _summary_scores_kernel[grid](
        q, hi, lo, block_table, seq, page_lens if page_lens is not None else seq, out,
        B, NB,
        q.stride(0), q.stride(1), hi.stride(0), hi.stride(1), block_table.stride(0), out.stride(0), out.stride(1),
        G=Hq // Hkv, D=D, D_PAD=triton.next_power_of_2(D), ROWS=rows, BLOCK_P=block_pages, MINMAX=mode == "minmax", HAS_PLEN=page_lens is not None,
        num_warps=cfg["num_warps"],
    )
    return out
