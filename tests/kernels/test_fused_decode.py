"""The fused decode kernels (summary scores + top-k in one launch, attention + split merge in one launch, fp8
K/V pages) against the pure-torch references on fresh random inputs of odd shapes.

Without a GPU they run under TRITON_INTERPRET=1 on CPU tensors (fp32/fp16, and fp8 pages, which the interpreter
loads); the gpu cases run bf16 at full shapes and check CUDA-graph replay (counters reset by the kernels).
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels import fp8_kv, fused_decode, reference  # noqa: E402

PAGE = reference.PAGE
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _cache(gen, seq_lens, Hkv, d, dtype, *, spare=3):
    """Random paged cache for rows of the given lengths, each row on its own permuted (non-identity) pages."""
    nbs = [max(1, (s + PAGE - 1) // PAGE) for s in seq_lens]
    nb = max(nbs) + 1
    num_pages = sum(nbs) + spare
    perm = torch.randperm(num_pages, generator=gen)
    table = torch.zeros(len(seq_lens), nb, dtype=torch.int32)
    used = 0
    for i, n in enumerate(nbs):
        table[i, :n] = perm[used : used + n].to(torch.int32)
        table[i, n:] = perm[-1]
        used += n
    k = torch.randn(num_pages, Hkv, PAGE, d, generator=gen).to(dtype)
    v = torch.randn(num_pages, Hkv, PAGE, d, generator=gen).to(dtype)
    return k.to(DEV), v.to(DEV), table.to(DEV), torch.tensor(seq_lens, dtype=torch.int32).to(DEV)


def _summaries(k):
    P = k.shape[0]
    return reference.page_summaries(k, torch.arange(P, device=k.device), torch.full((P,), PAGE, device=k.device))


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def _check_selection(got_sel, pages, counts, scores, table, seq, k, page_lens=None, **kw):
    want = reference.topk_blocks(scores.cpu(), seq.cpu(), k, **kw)
    assert torch.equal(got_sel.cpu(), want)
    vis = reference.visible_counts(table.cpu(), seq.cpu(), None if page_lens is None else page_lens.cpu())
    sel = want.long()
    used = sel >= 0
    want_pages = torch.where(used, table.cpu().long().gather(1, sel.clamp(min=0).flatten(1)).view(sel.shape), 0)
    want_counts = torch.where(used, vis.gather(1, sel.clamp(min=0).flatten(1)).view(sel.shape), 0)
    assert torch.equal(pages.cpu().long(), want_pages) and torch.equal(counts.cpu().long(), want_counts)


@pytest.mark.parametrize("mode", ["minmax", "mean"])
@pytest.mark.parametrize("G,Hkv,d,k,local,sink", [(1, 2, 64, 4, 1, 0), (7, 1, 128, 16, 1, 0), (16, 1, 64, 8, 2, 1)])
def test_summary_topk_matches_reference(mode, G, Hkv, d, k, local, sink):
    g = torch.Generator().manual_seed(30 + G + k)
    seqs = [1, 97, 127, 128, 129, 0, 40 * PAGE + 7]
    kc, _, table, seq = _cache(g, seqs, Hkv, d, torch.float16)
    kmin, kmax, kmean = _summaries(kc)
    plen = torch.randint(0, 2, (kc.shape[0],), generator=g).to(torch.int32).mul(PAGE).to(DEV)  # some empty pages
    q = torch.randn(len(seqs), G * Hkv, d, generator=g).to(DEV)
    # 16-page programs (three merge) reading 16 or all dims at once, one program for the whole table
    cfgs = [(None, {"block_pages": 16, "dim_chunk": 16}), (None, {"block_pages": 64}), (plen, {"block_pages": 16, "dim_chunk": 128})]
    for page_lens, cfg in cfgs:
        s, sel, pages, counts = fused_decode.summary_topk(q, kmin, kmax, table, seq, k, kmean=kmean, mode=mode,
                                                          page_lens=page_lens, local_blocks=local, sink_blocks=sink, **cfg)
        want = reference.summary_block_scores(q, kmin, kmax, table, seq, kmean=kmean, mode=mode, page_lens=page_lens)
        assert torch.equal(torch.isinf(s), torch.isinf(want))
        torch.testing.assert_close(s[torch.isfinite(want)], want[torch.isfinite(want)], atol=1e-3, rtol=1e-4)
        _check_selection(sel, pages, counts, s, table, seq, k, page_lens, local_blocks=local, sink_blocks=sink)
    assert not fused_decode.counters(torch.device(DEV), 1, "topk").any()  # every launch left its counters at 0


def test_summary_topk_ties_go_to_the_lower_block():
    g = torch.Generator().manual_seed(31)
    kc, _, table, seq = _cache(g, [30 * PAGE + 5], 2, 64, torch.float32)
    kmin, kmax, _ = _summaries(kc)
    kmin.copy_(kmin[0].clone()), kmax.copy_(kmax[0].clone())  # every page the same summary: all scores tie
    q = torch.randn(1, 4, 64, generator=g).to(DEV)
    _, sel, _, _ = fused_decode.summary_topk(q, kmin, kmax, table, seq, 16, block_pages=16)
    assert sel.cpu()[0, 0].tolist() == list(range(15)) + [30]


@pytest.mark.parametrize("G,Hkv,d,dtype", [(1, 2, 64, torch.float32), (7, 1, 128, torch.float16), (16, 1, 64, torch.float16), (3, 2, 128, torch.float32)])
def test_merged_decode_matches_reference(G, Hkv, d, dtype):
    g = torch.Generator().manual_seed(32 + G)
    seqs = [1, 97, 127, 128, 129, 0, 6 * PAGE + 33]
    kc, vc, table, seq = _cache(g, seqs, Hkv, d, dtype)
    sel = reference.topk_blocks(torch.randn(len(seqs), Hkv, table.shape[1], generator=g), seq.cpu(), 4).to(DEV)
    q = torch.randn(len(seqs), G * Hkv, d, generator=g).to(dtype).to(DEV)
    want, want_lse = reference.sparse_decode(q, kc, vc, table, seq, sel, return_lse=True)
    for units, sc in ((1, 4), (3, 2), (8, 1)):  # eight splits merged in chunks, three uneven splits, one split
        got, lse = fused_decode.sparse_decode_merged(q, kc, vc, table, seq, sel, return_lse=True, units_per_split=units, merge_splits=sc)
        assert _rel(got, want) < (1e-5 if dtype == torch.float32 else 2e-3)
        torch.testing.assert_close(lse, want_lse, atol=1e-3, rtol=1e-3)
        assert (got[5] == 0).all() and torch.isinf(lse[5]).all()
    plen = torch.randint(0, PAGE + 1, (kc.shape[0],), generator=g).to(torch.int32).to(DEV)  # partial and empty pages
    got = fused_decode.sparse_decode_merged(q, kc, vc, table, seq, sel, page_lens=plen, units_per_split=2)
    assert _rel(got, reference.sparse_decode(q, kc, vc, table, seq, sel, page_lens=plen)) < (1e-5 if dtype == torch.float32 else 2e-3)
    assert not fused_decode.counters(torch.device(DEV), 1, "attn").any()


def test_fused_step_with_partial_pages_matches_reference_pipeline():
    g = torch.Generator().manual_seed(33)
    seqs = [300, 20 * PAGE + 1, 129]
    kc, vc, table, seq = _cache(g, seqs, 2, 64, torch.float16)
    kmin, kmax, _ = _summaries(kc)
    plen = torch.randint(1, PAGE + 1, (kc.shape[0],), generator=g).to(torch.int32).to(DEV)
    q = torch.randn(3, 8, 64, generator=g).half().to(DEV)
    out, lse, sel = fused_decode.summary_sparse_decode(q, kmin, kmax, kc, vc, table, seq, 6, page_lens=plen, return_lse=True,
                                                       topk_cfg={"block_pages": 16}, decode_cfg={"units_per_split": 2})
    scores = reference.summary_block_scores(q, kmin, kmax, table, seq, page_lens=plen)
    want_sel = reference.topk_blocks(scores, seq.cpu(), 6)
    assert torch.equal(sel.cpu(), want_sel)
    want, want_lse = reference.sparse_decode(q, kc, vc, table, seq, sel, page_lens=plen, return_lse=True)
    assert _rel(out, want) < 2e-3
    torch.testing.assert_close(lse, want_lse, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("G,Hkv,d", [(4, 2, 64), (1, 1, 128), (16, 1, 64)])
def test_fp8_pages_decode_matches_dequantised_reference(G, Hkv, d):
    g = torch.Generator().manual_seed(34 + G)
    seqs = [1, 127, 128, 129, 5 * PAGE + 97]
    k16, v16, table, seq = _cache(g, seqs, Hkv, d, torch.float32)
    k16, v16 = k16 * 3.0, v16 * 0.5
    P = k16.shape[0]
    kc, ks = fp8_kv.empty_pages(P, Hkv, d, device=DEV)
    vc, vs = fp8_kv.empty_pages(P, Hkv, d, device=DEV)
    ids = torch.arange(P, device=DEV)
    fp8_kv.quantize_pages(k16, kc, ks, ids)
    fp8_kv.quantize_pages(v16, vc, vs, ids)
    sel = reference.topk_blocks(torch.randn(len(seqs), Hkv, table.shape[1], generator=g), seq.cpu(), 4).to(DEV)
    q = torch.randn(len(seqs), G * Hkv, d, generator=g).half().to(DEV)
    want = reference.sparse_decode(q, kc, vc, table, seq, sel, k_scale=ks, v_scale=vs)
    for units in (1, 8):
        got = fused_decode.sparse_decode_merged(q, kc, vc, table, seq, sel, k_scale=ks, v_scale=vs, units_per_split=units)
        assert _rel(got, want) < 3e-3
    full = reference.sparse_decode(q, k16, v16, table, seq, sel)  # against the unquantised cache: fp8 rounding only
    assert _rel(got, full) < 8e-2


def test_fp8_quantise_on_write_whole_pages_and_appended_tokens():
    g = torch.Generator().manual_seed(35)
    Hkv, d = 3, 64
    src = torch.randn(4, Hkv, PAGE, d, generator=g) * torch.tensor([0.01, 1.0, 300.0])[None, :, None, None]
    src[2, 1] = 0.0  # an all-zero head of a page
    pages, scales = fp8_kv.empty_pages(6, Hkv, d)
    ids = torch.tensor([5, 0, 3, 1])
    fp8_kv.quantize_pages(src, pages, scales, ids, page_lens=torch.tensor([128, 128, 128, 97]))
    back = fp8_kv.dequantize_pages(pages[ids], scales[ids])
    want = src.clone()
    want[3, :, 97:] = 0.0
    step = scales[ids][:, :, None, None] * 2**-9  # e4m3: 3 mantissa bits (half-ulp 2^-4 relative), subnormal step 2^-9
    assert ((back - want).abs() <= want.abs() * 2**-4 + step).all()
    assert (back[2, 1] == 0).all() and torch.isfinite(scales).all()
    # appending tokens one by one (a growing token raises the scale and re-rounds the page) ends near the bulk write
    inc, inc_scales = fp8_kv.empty_pages(1, Hkv, d)
    lens = torch.zeros(1, dtype=torch.int32)
    tokens = src[1].transpose(0, 1) * torch.linspace(0.1, 2.0, PAGE)[:, None, None]  # [PAGE, Hkv, d], growing
    for t in range(0, PAGE, 16):
        fp8_kv.write_tokens(inc, inc_scales, torch.zeros(16, dtype=torch.long), torch.arange(t, t + 16), tokens[t : t + 16], lens)
        lens += 16
    got = fp8_kv.dequantize_pages(inc, inc_scales)[0]
    assert _rel(got, tokens.transpose(0, 1)) < 0.05
    torch.testing.assert_close(inc_scales[0], tokens.abs().amax(dim=(0, 2)) / 448.0)


def test_ops_switch_runs_the_fused_step_and_the_reference_alike():
    from kernels import ops

    g = torch.Generator().manual_seed(36)
    kc, vc, table, seq = _cache(g, [300, 25 * PAGE + 3], 2, 64, torch.float32)
    kmin, kmax, _ = _summaries(kc)
    q = torch.randn(2, 6, 64, generator=g).to(DEV)
    with ops.use_backend("reference"):
        want, want_sel = ops.summary_sparse_decode(q, kmin, kmax, kc, vc, table, seq, 16)
    with ops.use_backend("triton"):
        got, sel = ops.summary_sparse_decode(q, kmin, kmax, kc, vc, table, seq, 16)
    assert torch.equal(sel.cpu(), want_sel.cpu())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("G,Hkv,d", [(7, 4, 128), (16, 4, 128), (1, 8, 64), (4, 2, 64), (2, 2, 24), (7, 4, 80)])  # 24, 80: padded dims
@pytest.mark.parametrize("fp8", [False, True])
def test_gpu_fused_step_bf16_full_size_and_graph_replay(G, Hkv, d, fp8):
    g = torch.Generator().manual_seed(40 + G)
    seqs = [1, 127, 129, 3000, 70_001]  # 1M-token selection: test_gpu_summary_topk_at_one_million_tokens
    kc, vc, table, seq = _cache(g, seqs, Hkv, d, torch.bfloat16)
    kmin, kmax, _ = _summaries(kc)
    scales = {}
    if fp8:
        P = kc.shape[0]
        k8, ks = fp8_kv.empty_pages(P, Hkv, d, device="cuda")
        v8, vs = fp8_kv.empty_pages(P, Hkv, d, device="cuda")
        fp8_kv.quantize_pages(kc, k8, ks, torch.arange(P, device="cuda"))
        fp8_kv.quantize_pages(vc, v8, vs, torch.arange(P, device="cuda"))
        kc, vc, scales = k8, v8, {"k_scale": ks, "v_scale": vs}
    q = torch.randn(len(seqs), G * Hkv, d, generator=g).bfloat16().cuda()

    def step():
        return fused_decode.summary_sparse_decode(q, kmin, kmax, kc, vc, table, seq, 16, **scales)

    s, sel, pages, counts = fused_decode.summary_topk(q, kmin, kmax, table, seq, 16)
    want_s = reference.summary_block_scores(q, kmin, kmax, table, seq)
    torch.testing.assert_close(s[torch.isfinite(want_s)], want_s[torch.isfinite(want_s)], atol=1e-2, rtol=1e-4)
    _check_selection(sel, pages, counts, s, table, seq, 16)
    out, sel2 = step()
    assert torch.equal(sel, sel2)
    want = reference.sparse_decode(q, kc, vc, table, seq, sel, **scales)
    assert _rel(out, want) < 1e-2
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        gout, gsel = step()
    for _ in range(3):
        q.copy_(torch.randn(q.shape, generator=g).bfloat16().cuda())
        graph.replay()
        out2, sel2 = step()
        assert torch.equal(gsel, sel2) and torch.equal(gout, out2)


@pytest.mark.gpu
@pytest.mark.parametrize("n_tokens", [128 * 1000 + 1, 1 << 20])
def test_gpu_summary_topk_at_one_million_tokens(n_tokens):
    g = torch.Generator().manual_seed(41)
    Hkv, d, G = 4, 128, 7
    nb = (n_tokens + PAGE - 1) // PAGE
    table = torch.randperm(nb + 5, generator=g)[:nb].to(torch.int32)[None].cuda()
    kmin = torch.randn(nb + 5, Hkv, d, generator=g).bfloat16().cuda()
    kmax = kmin + torch.rand(nb + 5, Hkv, d, generator=g).bfloat16().cuda()
    q = torch.randn(1, G * Hkv, d, generator=g).bfloat16().cuda()
    seq = torch.tensor([n_tokens], dtype=torch.int32, device="cuda")
    for cfg in ({"block_pages": 128, "dim_chunk": 32}, {"block_pages": 256, "dim_chunk": 16}, {"block_pages": 64, "dim_chunk": 64}):
        s, sel, pages, counts = fused_decode.summary_topk(q, kmin, kmax, table, seq, 16, **cfg)
        want = reference.summary_block_scores(q, kmin, kmax, table, seq)
        torch.testing.assert_close(s[torch.isfinite(want)], want[torch.isfinite(want)], atol=1e-2, rtol=1e-4)
        _check_selection(sel, pages, counts, s, table, seq, 16)


@pytest.mark.gpu
def test_gpu_programmatic_dependent_launch_gives_the_same_step():
    g = torch.Generator().manual_seed(42)
    kc, vc, table, seq = _cache(g, [129, 70_001], 4, 128, torch.bfloat16)
    kmin, kmax, _ = _summaries(kc)
    q = torch.randn(2, 28, 128, generator=g).bfloat16().cuda()
    off = {"topk_cfg": {"trigger": False}, "decode_cfg": {"pdl": False}}  # plain launches (Hopper's default is PDL)
    plain = fused_decode.summary_sparse_decode(q, kmin, kmax, kc, vc, table, seq, 16, **off)
    early = lambda: fused_decode.summary_sparse_decode(q, kmin, kmax, kc, vc, table, seq, 16,  # noqa: E731
                                                       topk_cfg={"trigger": True}, decode_cfg={"pdl": True})
    got = early()
    assert torch.equal(got[0], plain[0]) and torch.equal(got[1], plain[1])
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        gout, gsel = early()
    for _ in range(3):
        q.copy_(torch.randn(q.shape, generator=g).bfloat16().cuda())
        graph.replay()
        want, want_sel = fused_decode.summary_sparse_decode(q, kmin, kmax, kc, vc, table, seq, 16, **off)
        assert torch.equal(gsel, want_sel) and torch.equal(gout, want)
