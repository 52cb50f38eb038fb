"""Triton block-sparse flash-decoding over paged K/V, and its log-sum-exp merge.

One program per (row, KV head, split): the group's query heads form one [G, d] tile; the split walks
`units` page parts (a part is BLOCK_N tokens of one selected page, read through the block table) with an
online softmax in base 2, then writes a partial output and log2-sum-exp. A merge program per (row, query
head) combines the splits. With a single split the first kernel writes the final output itself. Grid and
buffers depend only on shapes, so a decode step captures in a CUDA graph. Prefill of a chunk of queries is
the same kernel over rows that share a block table (one split per row, no merge).
Head dims that are not powers of two are padded (D_PAD) and masked.
Semantics: `kernels.reference.sparse_decode` / `sparse_prefill` / `dense_decode`. Not here: choosing blocks.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.launch_configs import launch_config

PAGE = 128
PAGE_C = tl.constexpr(PAGE)  # the page size inside kernels
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    """a @ b; IEEE: exact fp32 products (fp32 caches, the interpreter's tests) instead of TF32."""
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    return tl.dot(a, b)


@triton.jit
def _softmax_step(s, m_i, l_i):
    """One tile of the online softmax: scores s [rows, n] in log2 units (-inf where not visible), running max m_i
    and sum l_i [rows] -> (new max, alpha that rescales what was accumulated, p = exp2(s - new max), new sum)."""
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    return m_new, alpha, p, l_i * alpha + tl.sum(p, axis=1)


@triton.jit
def _softmax_finish(acc, m_i, l_i):
    """(out = acc / l_i, log-sum-exp in log2 units); rows that saw nothing: out 0, lse -inf."""
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    return out, tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))


@triton.jit
def _sparse_attn_kernel(
    q_ptr, k_ptr, v_ptr, bt_ptr, seq_ptr, plen_ptr, sel_ptr, o_ptr, lse_ptr,
    HKV, NSEL, qk_scale,
    s_qb, s_qh, s_kp, s_kh, s_kt, s_vp, s_vh, s_vt, s_btb, s_sb, s_sh,
    s_ob, s_oh, s_os, s_lb, s_lh,
    G: tl.constexpr, G_PAD: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr, SUB: tl.constexpr, UNITS: tl.constexpr,
    HAS_PLEN: tl.constexpr, DIRECT: tl.constexpr, IEEE: tl.constexpr,
):
    row = tl.program_id(0) // HKV
    h = tl.program_id(0) % HKV
    split = tl.program_id(1)
    gg = tl.arange(0, G_PAD)
    dd = tl.arange(0, D_PAD)
    dm = dd < D  # head dims padded up to a power of two are masked
    nn = tl.arange(0, BLOCK_N)
    qh = h * G + gg
    q = tl.load(q_ptr + row * s_qb + qh[:, None] * s_qh + dd[None, :], mask=(gg[:, None] < G) & dm[None, :], other=0.0)
    seq = tl.load(seq_ptr + row)
    m_i = tl.full([G_PAD], -1.0e30, tl.float32)
    l_i = tl.zeros([G_PAD], tl.float32)
    acc = tl.zeros([G_PAD, D_PAD], tl.float32)
    for u in range(split * UNITS, split * UNITS + UNITS):
        slot = u // SUB
        part = u % SUB
        blk = tl.load(sel_ptr + row * s_sb + h * s_sh + slot, mask=slot < NSEL, other=-1)
        phys = tl.load(bt_ptr + row * s_btb + tl.maximum(blk, 0))
        count = tl.minimum(seq - blk * PAGE_C, PAGE_C)
        if HAS_PLEN:
            count = tl.minimum(count, tl.load(plen_ptr + phys))
        count = tl.where(blk >= 0, count, 0)
        tok = part * BLOCK_N + nn
        vis = tok < count
        k = tl.load(k_ptr + phys * s_kp + h * s_kh + tok[:, None] * s_kt + dd[None, :], mask=vis[:, None] & dm[None, :], other=0.0)
        v = tl.load(v_ptr + phys * s_vp + h * s_vh + tok[:, None] * s_vt + dd[None, :], mask=vis[:, None] & dm[None, :], other=0.0)
        s = tl.where(vis[None, :], _dot(q.to(k.dtype), tl.trans(k), IEEE) * qk_scale, float("-inf"))
        m_i, alpha, p, l_i = _softmax_step(s, m_i, l_i)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
    out, lse2 = _softmax_finish(acc, m_i, l_i)
    gmask = gg < G
    if DIRECT:
        tl.store(o_ptr + row * s_ob + qh[:, None] * s_oh + dd[None, :], out.to(o_ptr.dtype.element_ty), mask=gmask[:, None] & dm[None, :])
        tl.store(lse_ptr + row * s_lb + qh * s_lh, lse2 * 0.6931471805599453, mask=gmask)
    else:
        tl.store(o_ptr + row * s_ob + qh[:, None] * s_oh + split * s_os + dd[None, :], out, mask=gmask[:, None] & dm[None, :])
        tl.store(lse_ptr + row * s_lb + qh * s_lh + split, lse2, mask=gmask)


@triton.jit
def _merge_kernel(
    po_ptr, plse_ptr, o_ptr, lse_ptr,
    HQ, NS,
    s_pb, s_ph, s_ps, s_lb, s_lh, s_ob, s_oh, s_fb, s_fh,
    D: tl.constexpr, D_PAD: tl.constexpr, NS_PAD: tl.constexpr,
):
    row = tl.program_id(0) // HQ
    h = tl.program_id(0) % HQ
    ss = tl.arange(0, NS_PAD)
    dd = tl.arange(0, D_PAD)
    dm = dd < D
    lse = tl.load(plse_ptr + row * s_lb + h * s_lh + ss, mask=ss < NS, other=float("-inf"))
    m = tl.max(lse, axis=0)
    m = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp2(lse - m)
    den = tl.sum(w, axis=0)
    part = tl.load(po_ptr + row * s_pb + h * s_ph + ss[:, None] * s_ps + dd[None, :], mask=(ss < NS)[:, None] & dm[None, :], other=0.0)
    out = tl.sum(part * w[:, None], axis=0) / tl.where(den > 0, den, 1.0)
    tl.store(o_ptr + row * s_ob + h * s_oh + dd, out.to(o_ptr.dtype.element_ty), mask=dm)
    total = tl.where(den > 0, (m + tl.log2(tl.where(den > 0, den, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(lse_ptr + row * s_fb + h * s_fh, total)


def sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, *, scale=None, page_lens=None, return_lse=False,
                  block_n=None, units_per_split=1, num_warps=None, num_stages=None):
    """Triton version of `reference.sparse_decode`. units_per_split page parts of block_n tokens per program;
    units_per_split >= k*128/block_n gives one split (no merge kernel). Launch parameters left None come from
    `kernels.launch_configs` ("decode")."""
    cfg = launch_config("decode", q.device, block_n=block_n, num_warps=num_warps, num_stages=num_stages)
    block_n = cfg["block_n"]
    B, Hq, D = q.shape
    Hkv = k_cache.shape[1]
    nsel = selected.shape[-1]
    assert Hq % Hkv == 0 and k_cache.shape[2] == PAGE and k_cache.shape[3] == D and PAGE % block_n == 0
    assert k_cache.stride(3) == 1 and v_cache.stride(3) == 1 and q.stride(2) == 1
    assert block_table.stride(1) == 1 and selected.stride(2) == 1
    G = Hq // Hkv
    units = nsel * (PAGE // block_n)
    units_per_split = min(units_per_split, units)
    splits = triton.cdiv(units, units_per_split)
    scale = D**-0.5 if scale is None else scale
    out = torch.empty(B, Hq, D, device=q.device, dtype=q.dtype)
    lse = torch.empty(B, Hq, device=q.device, dtype=torch.float32)
    seq = seq_lens.to(torch.int32)
    direct = splits == 1
    po, plse, s_os = split_partials(out, lse, splits)
    _sparse_attn_kernel[(B * Hkv, splits)](
        q, k_cache, v_cache, block_table, seq, page_lens if page_lens is not None else seq, selected, po, plse,
        Hkv, nsel, scale * LOG2E,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_table.stride(0), selected.stride(0), selected.stride(1),
        po.stride(0), po.stride(1), s_os, plse.stride(0), plse.stride(1),
        G=G, G_PAD=max(16, triton.next_power_of_2(G)), D=D, D_PAD=max(16, triton.next_power_of_2(D)), BLOCK_N=block_n, SUB=PAGE // block_n, UNITS=units_per_split,
        HAS_PLEN=page_lens is not None, DIRECT=direct, IEEE=k_cache.dtype == torch.float32,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    if not direct:
        merge_splits(po, plse, out, lse)
    return (out, lse) if return_lse else out


def split_partials(out: torch.Tensor, lse: torch.Tensor, splits: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Where an attention kernel writes (partials, their lse, split stride): out/lse themselves with one split,
    else fp32 partials [R, Hq, splits, D] and [R, Hq, splits] for merge_splits."""
    if splits == 1:
        return out, lse, 0
    R, Hq, D = out.shape
    po = torch.empty(R, Hq, splits, D, device=out.device, dtype=torch.float32)
    plse = torch.empty(R, Hq, splits, device=out.device, dtype=torch.float32)
    return po, plse, po.stride(2)


def merge_splits(po: torch.Tensor, plse: torch.Tensor, out: torch.Tensor, lse: torch.Tensor) -> None:
    """Merges per-split partial outputs po [R, Hq, S, D] and their log-sum-exps plse [R, Hq, S] into out [R, Hq, D]
    and lse [R, Hq] (one program per row and query head)."""
    R, Hq, splits, D = po.shape
    _merge_kernel[(R * Hq,)](
        po, plse, out, lse,
        Hq, splits,
        po.stride(0), po.stride(1), po.stride(2), plse.stride(0), plse.stride(1),
        out.stride(0), out.stride(1), lse.stride(0), lse.stride(1),
        D=D, D_PAD=triton.next_power_of_2(D), NS_PAD=max(2, triton.next_power_of_2(splits)), num_warps=4,
    )


def dense_decode(q, k_cache, v_cache, block_table, seq_lens, *, scale=None, page_lens=None, return_lse=False, max_splits=64):
    """Triton version of `reference.dense_decode`: every block of the table, split into at most max_splits parts."""
    B, Hkv, nb = q.shape[0], k_cache.shape[1], block_table.shape[1]
    selected = torch.arange(nb, dtype=torch.int32, device=q.device).expand(B, Hkv, nb)
    block_n = launch_config("decode", q.device)["block_n"]
    per_split = triton.cdiv(nb * (PAGE // block_n), max_splits)
    return sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, scale=scale, page_lens=page_lens,
                         return_lse=return_lse, block_n=block_n, units_per_split=per_split)


def sparse_prefill(q, k_cache, v_cache, block_table, positions, selected, *, scale=None, page_lens=None, return_lse=False):
    """Triton version of `reference.sparse_prefill`: one program per (query token, KV head) over its k pages."""
    rows = block_table.unsqueeze(0).expand(positions.numel(), -1)
    seq_lens = positions.to(torch.int32) + 1
    block_n = launch_config("decode", q.device)["block_n"]
    units = selected.shape[-1] * (PAGE // block_n)
    return sparse_decode(q, k_cache, v_cache, rows, seq_lens, selected, scale=scale, page_lens=page_lens,
                         return_lse=return_lse, block_n=block_n, units_per_split=units)
