"""Every Triton kernel at head / index dims that are not powers of two (24, 48, 80), against its pure-torch reference.

Triton tiles must be powers of two, so the kernels pad the dim (D_PAD) and mask the loads and stores past it.
Without a GPU they run under TRITON_INTERPRET=1 on CPU tensors (fp32/fp16, small shapes, odd sequence lengths);
the bf16 full-size cases of these dims are the gpu-marked tests of test_fused_decode.py / test_triton_kernels.py.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels import fp8_kv, fused_decode, index_scores, reference, sparse_decode, summaries, topk  # noqa: E402

PAGE = reference.PAGE
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DEV = "cuda" if torch.cuda.is_available() else "cpu"
SEQS = [97, 129, 0, 4 * PAGE + 3]  # a partial first page, one token past a page, an empty row, five blocks


def _cache(gen, seq_lens, Hkv, d, dtype):
    """Random paged cache, each row on its own permuted pages; the pages past a row's end point at a spare page."""
    nbs = [max(1, (s + PAGE - 1) // PAGE) for s in seq_lens]
    num_pages = sum(nbs) + 2
    perm = torch.randperm(num_pages, generator=gen).to(torch.int32)
    table = torch.full((len(seq_lens), max(nbs) + 1), int(perm[-1]), dtype=torch.int32)
    used = 0
    for i, n in enumerate(nbs):
        table[i, :n] = perm[used : used + n]
        used += n
    k = torch.randn(num_pages, Hkv, PAGE, d, generator=gen).to(dtype)
    v = torch.randn(num_pages, Hkv, PAGE, d, generator=gen).to(dtype)
    return k.to(DEV), v.to(DEV), table.to(DEV), torch.tensor(seq_lens, dtype=torch.int32).to(DEV)


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def _tol(dtype):
    return 1e-5 if dtype == torch.float32 else 2e-3


@pytest.mark.parametrize("d,dtype", [(48, torch.float32), (80, torch.float16), (24, torch.float16)])
def test_attention_kernels_at_padded_head_dims(d, dtype):
    g = torch.Generator().manual_seed(60 + d)
    G, Hkv = 3, 2
    kc, vc, table, seq = _cache(g, SEQS, Hkv, d, dtype)
    sel = reference.topk_blocks(torch.randn(len(SEQS), Hkv, table.shape[1], generator=g), seq.cpu(), 3).to(DEV)
    q = torch.randn(len(SEQS), G * Hkv, d, generator=g).to(dtype).to(DEV)
    want, want_lse = reference.sparse_decode(q, kc, vc, table, seq, sel, return_lse=True)
    for units in (1, 6):  # six splits merged in-kernel (or by the merge kernel), one split
        got, lse = fused_decode.sparse_decode_merged(q, kc, vc, table, seq, sel, return_lse=True, units_per_split=units)
        assert got.shape == want.shape and _rel(got, want) < _tol(dtype)
        torch.testing.assert_close(lse, want_lse, atol=1e-3, rtol=1e-3)
        got, lse = sparse_decode.sparse_decode(q, kc, vc, table, seq, sel, return_lse=True, units_per_split=units)
        assert _rel(got, want) < _tol(dtype)
        torch.testing.assert_close(lse, want_lse, atol=1e-3, rtol=1e-3)
    assert (got[2] == 0).all()  # the empty row
    dense = sparse_decode.dense_decode(q, kc, vc, table, seq)
    assert _rel(dense, reference.dense_decode(q, kc, vc, table, seq)) < _tol(dtype)


def test_fp8_pages_at_a_padded_head_dim():
    g = torch.Generator().manual_seed(61)
    Hkv, d = 2, 80
    k32, v32, table, seq = _cache(g, SEQS, Hkv, d, torch.float32)
    P = k32.shape[0]
    kc, ks = fp8_kv.empty_pages(P, Hkv, d, device=DEV)
    vc, vs = fp8_kv.empty_pages(P, Hkv, d, device=DEV)
    fp8_kv.quantize_pages(k32, kc, ks, torch.arange(P, device=DEV))
    fp8_kv.quantize_pages(v32, vc, vs, torch.arange(P, device=DEV))
    sel = reference.topk_blocks(torch.randn(len(SEQS), Hkv, table.shape[1], generator=g), seq.cpu(), 3).to(DEV)
    q = torch.randn(len(SEQS), 4 * Hkv, d, generator=g).half().to(DEV)
    want = reference.sparse_decode(q, kc, vc, table, seq, sel, k_scale=ks, v_scale=vs)
    got = fused_decode.sparse_decode_merged(q, kc, vc, table, seq, sel, k_scale=ks, v_scale=vs, units_per_split=2)
    assert _rel(got, want) < 3e-3


@pytest.mark.parametrize("d", [48, 80])
def test_summary_kernels_at_padded_head_dims(d):
    """Page summaries built, scored (separate and fused with top-k, in slices that do not divide d), selected."""
    g = torch.Generator().manual_seed(62 + d)
    G, Hkv, k = 3, 2, 4
    seqs = [97, 129, 9 * PAGE + 5]
    kc, vc, table, seq = _cache(g, seqs, Hkv, d, torch.float16)
    P = kc.shape[0]
    ids = torch.arange(P, device=DEV)
    lens = torch.randint(1, PAGE + 1, (P,), generator=g).to(torch.int32).to(DEV)
    built = [torch.full((P, Hkv, d), 7.0, dtype=torch.float16, device=DEV) for _ in range(3)]
    summaries.write_page_summaries(kc, *built, ids, lens)
    want_built = reference.page_summaries(kc, ids, lens)
    for a, b in zip(built, want_built):
        torch.testing.assert_close(a, b.to(a.dtype), atol=1e-3, rtol=1e-3)
    kmin, kmax, kmean = built
    q = torch.randn(len(seqs), G * Hkv, d, generator=g).to(DEV)
    for mode in ("minmax", "mean"):
        want = reference.summary_block_scores(q, kmin, kmax, table, seq, kmean=kmean, mode=mode)
        fin = torch.isfinite(want)
        got = index_scores.summary_block_scores(q, kmin, kmax, table, seq, kmean=kmean, mode=mode, block_pages=4)
        assert torch.equal(torch.isfinite(got), fin)
        torch.testing.assert_close(got[fin], want[fin], atol=1e-3, rtol=1e-4)
        assert torch.equal(topk.topk_blocks(got, seq, k, chunk=4).cpu(), reference.topk_blocks(got.cpu(), seq.cpu(), k))
        for cfg in ({"block_pages": 4, "dim_chunk": 32}, {"block_pages": 16, "dim_chunk": 64}):
            s, sel, _, _ = fused_decode.summary_topk(q, kmin, kmax, table, seq, k, kmean=kmean, mode=mode, **cfg)
            torch.testing.assert_close(s[fin], want[fin], atol=1e-3, rtol=1e-4)
            assert torch.equal(sel.cpu(), reference.topk_blocks(s.cpu(), seq.cpu(), k))
    out, sel = fused_decode.summary_sparse_decode(q.half(), kmin, kmax, kc, vc, table, seq, k)
    assert _rel(out, reference.sparse_decode(q.half(), kc, vc, table, seq, sel)) < 2e-3


@pytest.mark.parametrize("di,dtype", [(48, torch.float32), (80, torch.float16)])
def test_index_scores_at_padded_index_dims(di, dtype):
    g = torch.Generator().manual_seed(63 + di)
    _, _, table, seq = _cache(g, [97, 129, 3 * PAGE + 1], 1, 16, dtype)
    idx = torch.randn(table.max().item() + 1, PAGE, di, generator=g).to(dtype).to(DEV)
    q = torch.randn(3, 2, di, generator=g).to(dtype).to(DEV)
    got = index_scores.index_block_scores(q, idx, table, seq, pages_per_program=2)
    want = reference.index_block_scores(q, idx, table, seq)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    fin = torch.isfinite(want)
    torch.testing.assert_close(got[fin], want[fin], atol=1e-3, rtol=1e-3)
