"""Triton page-summary builder: per-dimension min, max and mean of each filled page's valid keys.

Run when pages are filled (or a partial page grows); writes kmin/kmax/kmean [num_pages, Hkv, d] in place.
Semantics: `kernels.reference.write_page_summaries`. Not here: scoring with the summaries (`kernels.index_scores`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

PAGE = 128
PAGE_C = tl.constexpr(PAGE)  # the page size inside kernels


@triton.jit
def _summaries_kernel(
    k_ptr, ids_ptr, lens_ptr, lo_ptr, hi_ptr, mean_ptr,
    HKV,
    s_kp, s_kh, s_kt, s_sp, s_sh,
    D: tl.constexpr, D_PAD: tl.constexpr, WANT_LO: tl.constexpr, WANT_HI: tl.constexpr, WANT_MEAN: tl.constexpr,
):
    i = tl.program_id(0) // HKV
    h = tl.program_id(0) % HKV
    page = tl.load(ids_ptr + i)
    n = tl.load(lens_ptr + i)
    tok = tl.arange(0, PAGE_C)
    dd = tl.arange(0, D_PAD)
    dm = dd < D  # head dims padded up to a power of two are masked
    vis = (tok < n)[:, None]
    k = tl.load(k_ptr + page * s_kp + h * s_kh + tok[:, None] * s_kt + dd[None, :], mask=vis & dm[None, :], other=0.0).to(tl.float32)
    empty = n <= 0
    dst = page * s_sp + h * s_sh + dd
    if WANT_LO:
        lo = tl.where(empty, 0.0, tl.min(tl.where(vis, k, float("inf")), axis=0))
        tl.store(lo_ptr + dst, lo.to(lo_ptr.dtype.element_ty), mask=dm)
    if WANT_HI:
        hi = tl.where(empty, 0.0, tl.max(tl.where(vis, k, float("-inf")), axis=0))
        tl.store(hi_ptr + dst, hi.to(hi_ptr.dtype.element_ty), mask=dm)
    if WANT_MEAN:
        mean = tl.sum(k, axis=0) / tl.maximum(n, 1).to(tl.float32)
        tl.store(mean_ptr + dst, mean.to(mean_ptr.dtype.element_ty), mask=dm)


def write_page_summaries(k_cache, kmin, kmax, kmean, page_ids, page_lens, *, num_warps=4):
    """Triton version of `reference.write_page_summaries` (kmin/kmax/kmean share one layout; any may be None)."""
    P = page_ids.numel()
    Hkv, D = k_cache.shape[1], k_cache.shape[3]
    some = next(t for t in (kmin, kmax, kmean) if t is not None)
    for t in (kmin, kmax, kmean):
        assert t is None or (t.stride() == some.stride() and t.stride(2) == 1), "summaries must share one layout"
    assert k_cache.stride(3) == 1
    if P == 0:
        return
    _summaries_kernel[(P * Hkv,)](
        k_cache, page_ids.to(torch.int64), page_lens.to(torch.int32),
        kmin if kmin is not None else some, kmax if kmax is not None else some, kmean if kmean is not None else some,
        Hkv,
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), some.stride(0), some.stride(1),
        D=D, D_PAD=triton.next_power_of_2(D), WANT_LO=kmin is not None, WANT_HI=kmax is not None, WANT_MEAN=kmean is not None,
        num_warps=num_warps,
    )
