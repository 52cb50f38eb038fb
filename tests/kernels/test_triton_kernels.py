"""Each Triton kernel against its pure-torch reference on fresh random inputs of odd shapes.

Without a GPU the kernels run under TRITON_INTERPRET=1 on CPU tensors (fp32/fp16, small shapes); the cases
marked gpu run bf16 at full shapes and check CUDA-graph replay.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels import index_scores, reference, sparse_decode, summaries, topk  # noqa: E402

PAGE = reference.PAGE
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy noise from the interpreter
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
        table[i, n:] = perm[-1]  # slots past the sequence point at some page; they must never be read as visible
        used += n
    k = torch.randn(num_pages, Hkv, PAGE, d, generator=gen).to(dtype)
    v = torch.randn(num_pages, Hkv, PAGE, d, generator=gen).to(dtype)
    seq = torch.tensor(seq_lens, dtype=torch.int32)
    return k.to(DEV), v.to(DEV), table.to(DEV), seq.to(DEV)


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_index_scores_match_reference(dtype):
    g = torch.Generator().manual_seed(10)
    seqs = [1, 97, 129, 5 * PAGE + 3, 4 * PAGE]
    H, di = 3, 64
    nbs = [(s + PAGE - 1) // PAGE for s in seqs]
    _, _, table, seq = _cache(g, seqs, 1, 16, dtype)
    idx = torch.randn(table.max().item() + 1, PAGE, di, generator=g).to(dtype).to(DEV)
    q = torch.randn(len(seqs), H, di, generator=g).to(dtype).to(DEV)
    plen = torch.randint(0, PAGE + 1, (idx.shape[0],), generator=g).to(torch.int32).to(DEV)
    for page_lens in (None, plen):
        got = index_scores.index_block_scores(q, idx, table, seq, page_lens, pages_per_program=2)
        want = reference.index_block_scores(q, idx, table, seq, page_lens)
        assert torch.equal(torch.isinf(got), torch.isinf(want))
        fin = torch.isfinite(want)
        torch.testing.assert_close(got[fin], want[fin], atol=1e-3, rtol=1e-3)
    assert max(nbs) + 1 == table.shape[1]


def test_index_scores_for_prefill_rows_share_page_reads():
    g = torch.Generator().manual_seed(11)
    _, _, table, _ = _cache(g, [6 * PAGE + 17], 1, 16, torch.float32)
    idx = torch.randn(table.max().item() + 1, PAGE, 64, generator=g).to(DEV)
    positions = torch.tensor([0, 5, 127, 128, 300, 511, 700, 6 * PAGE + 16], dtype=torch.int32, device=DEV)
    rows, seq = reference.prefill_rows(table[0], positions)
    q = torch.randn(positions.numel(), 4, 64, generator=g).to(DEV)
    got = index_scores.index_block_scores(q, idx, rows, seq, pages_per_program=4)
    want = reference.index_block_scores(q, idx, rows, seq)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    torch.testing.assert_close(got[torch.isfinite(want)], want[torch.isfinite(want)], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["minmax", "mean"])
@pytest.mark.parametrize("G,d", [(1, 64), (7, 128), (16, 64)])
def test_summary_scores_match_reference(mode, G, d):
    g = torch.Generator().manual_seed(12 + G)
    Hkv = 2
    seqs = [1, 127, 128, 129, 9 * PAGE + 50]
    k, _, table, seq = _cache(g, seqs, Hkv, d, torch.float16)
    P = k.shape[0]
    kmin, kmax, kmean = reference.page_summaries(k, torch.arange(P, device=DEV), torch.full((P,), PAGE, device=DEV))
    q = torch.randn(len(seqs), G * Hkv, d, generator=g).to(DEV)
    got = index_scores.summary_block_scores(q, kmin, kmax, table, seq, kmean=kmean, mode=mode, block_pages=4)
    want = reference.summary_block_scores(q, kmin, kmax, table, seq, kmean=kmean, mode=mode)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    torch.testing.assert_close(got[torch.isfinite(want)], want[torch.isfinite(want)], atol=1e-3, rtol=1e-4)
    rows, pseq = reference.prefill_rows(table[4], torch.tensor([3, 300, 9 * PAGE + 49], device=DEV, dtype=torch.int32))
    got = index_scores.summary_block_scores(q[:3], kmin, kmax, rows, pseq, kmean=kmean, mode=mode, block_pages=4)
    want = reference.summary_block_scores(q[:3], kmin, kmax, rows, pseq, kmean=kmean, mode=mode)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("k,local,sink", [(16, 1, 0), (4, 1, 0), (8, 2, 1)])
def test_topk_matches_reference_with_ties_and_padding(k, local, sink):
    g = torch.Generator().manual_seed(13 + k)
    seqs = [0, 1, 128, 129, k * PAGE, k * PAGE + 1, 40 * PAGE + 7, 75 * PAGE]
    nb = 76
    H = 3
    scores = torch.randint(-4, 5, (len(seqs), H, nb), generator=g).float()  # many exact ties
    scores[1, 0, :] = torch.randn(nb, generator=g)
    scores[6, 1, torch.randperm(nb, generator=g)[:60]] = float("-inf")  # fewer finite candidates than picks
    seq = torch.tensor(seqs, dtype=torch.int32)
    want = reference.topk_blocks(scores, seq, k, local_blocks=local, sink_blocks=sink)
    for chunk in (16, 512):  # candidates merged from five chunks, and one chunk
        got = topk.topk_blocks(scores.to(DEV), seq.to(DEV), k, local_blocks=local, sink_blocks=sink, chunk=chunk)
        assert torch.equal(got.cpu(), want)


def _decode_case(gen, seqs, G, Hkv, d, dtype, k=16):
    kc, vc, table, seq = _cache(gen, seqs, Hkv, d, dtype)
    scores = torch.randn(len(seqs), Hkv, table.shape[1], generator=gen)
    selected = reference.topk_blocks(scores, seq.cpu(), k).to(DEV)
    q = torch.randn(len(seqs), G * Hkv, d, generator=gen).to(dtype).to(DEV)
    return q, kc, vc, table, seq, selected


@pytest.mark.parametrize("G,Hkv,d,dtype", [(1, 2, 64, torch.float32), (7, 1, 128, torch.float16), (16, 1, 64, torch.float16), (3, 2, 128, torch.float32)])
def test_sparse_decode_matches_reference(G, Hkv, d, dtype):
    g = torch.Generator().manual_seed(14 + G)
    seqs = [1, 97, 127, 128, 129, 6 * PAGE + 33]
    q, kc, vc, table, seq, selected = _decode_case(g, seqs, G, Hkv, d, dtype, k=4)
    want, want_lse = reference.sparse_decode(q, kc, vc, table, seq, selected, return_lse=True)
    for units in (1, 3, 8):  # merged splits, uneven splits, one split
        got, lse = sparse_decode.sparse_decode(q, kc, vc, table, seq, selected, return_lse=True, units_per_split=units)
        assert _rel(got, want) < (1e-5 if dtype == torch.float32 else 2e-3)
        torch.testing.assert_close(lse, want_lse, atol=1e-3, rtol=1e-3)


def test_sparse_decode_partial_pages_and_empty_rows():
    g = torch.Generator().manual_seed(15)
    q, kc, vc, table, seq, selected = _decode_case(g, [300, 0, 700], 4, 2, 64, torch.float32, k=4)
    plen = torch.randint(0, PAGE + 1, (kc.shape[0],), generator=g).to(torch.int32).to(DEV)
    want = reference.sparse_decode(q, kc, vc, table, seq, selected, page_lens=plen)
    got = sparse_decode.sparse_decode(q, kc, vc, table, seq, selected, page_lens=plen)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got[1] == 0).all()


def test_dense_decode_and_prefill_match_reference():
    g = torch.Generator().manual_seed(16)
    q, kc, vc, table, seq, _ = _decode_case(g, [97, 5 * PAGE + 1], 2, 2, 64, torch.float16)
    torch.testing.assert_close(sparse_decode.dense_decode(q, kc, vc, table, seq), reference.dense_decode(q, kc, vc, table, seq), atol=2e-3, rtol=2e-3)
    positions = torch.tensor([0, 1, 127, 128, 129, 400, 5 * PAGE], dtype=torch.int32, device=DEV)
    rows, pseq = reference.prefill_rows(table[1], positions)
    sel = reference.topk_blocks(torch.randn(positions.numel(), 2, table.shape[1], generator=g), pseq.cpu(), 3).to(DEV)
    qp = torch.randn(positions.numel(), 4, 64, generator=g).half().to(DEV)
    got = sparse_decode.sparse_prefill(qp, kc, vc, table[1], positions, sel)
    want = reference.sparse_prefill(qp, kc, vc, table[1], positions, sel)
    assert _rel(got, want) < 2e-3


def test_page_summaries_builder_matches_reference():
    g = torch.Generator().manual_seed(17)
    kc = torch.randn(7, 3, PAGE, 64, generator=g).half().to(DEV)
    ids = torch.tensor([5, 0, 3, 6], device=DEV)
    lens = torch.tensor([128, 1, 0, 77], dtype=torch.int32, device=DEV)
    got = [torch.full((7, 3, 64), 9.0, dtype=torch.float16, device=DEV) for _ in range(3)]
    summaries.write_page_summaries(kc, *got, ids, lens)
    want = [t.clone() for t in got]
    want = [torch.full_like(t, 9.0) for t in want]
    reference.write_page_summaries(kc, *want, ids, lens)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_ops_switch_picks_reference_on_cpu_and_triton_when_forced():
    from kernels import ops

    g = torch.Generator().manual_seed(18)
    q, kc, vc, table, seq, sel = _decode_case(g, [300, 129], 2, 2, 64, torch.float32, k=3)
    with ops.use_backend("reference"):
        want = ops.sparse_decode(q, kc, vc, table, seq, sel)
    with ops.use_backend("triton"):
        got = ops.sparse_decode(q, kc, vc, table, seq, sel)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        ops.use_backend("cuda")


# ---- GPU: bf16, full shapes, CUDA graphs ------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("n_tokens", [97, 128 * 1000 + 1, 1 << 20])
def test_gpu_index_scores_and_topk_full_size(n_tokens):
    g = torch.Generator().manual_seed(20)
    Hkv, di = 4, 128
    nb = (n_tokens + PAGE - 1) // PAGE
    table = torch.randperm(nb + 5, generator=g)[:nb].to(torch.int32)[None].cuda()
    idx = torch.randn(nb + 5, PAGE, di, generator=g).bfloat16().cuda()
    q = torch.randn(1, Hkv, di, generator=g).bfloat16().cuda()
    seq = torch.tensor([n_tokens], dtype=torch.int32, device="cuda")
    got = index_scores.index_block_scores(q, idx, table, seq)
    want = reference.index_block_scores(q, idx, table, seq)
    fin = torch.isfinite(want)
    assert torch.equal(fin, torch.isfinite(got))
    torch.testing.assert_close(got[fin], want[fin], atol=1e-3, rtol=1e-4)
    sel = topk.topk_blocks(want, seq, 16)
    assert torch.equal(sel.cpu(), reference.topk_blocks(want.cpu(), seq.cpu(), 16))


@pytest.mark.gpu
@pytest.mark.parametrize("G,Hkv,d", [(7, 4, 128), (16, 4, 128), (1, 8, 64), (4, 2, 64), (2, 2, 24), (7, 4, 80)])  # 24, 80: padded dims
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gpu_decode_pipeline_bf16_and_graph_replay(G, Hkv, d, dtype):
    g = torch.Generator().manual_seed(21 + G)
    seqs = [1, 127, 129, 3000, 200_001]
    kc, vc, table, seq = _cache(g, seqs, Hkv, d, dtype)
    P = kc.shape[0]
    kmin, kmax, kmean = (torch.empty(P, Hkv, d, dtype=dtype, device="cuda") for _ in range(3))
    summaries.write_page_summaries(kc, kmin, kmax, kmean, torch.arange(P, device="cuda"), torch.full((P,), PAGE, device="cuda"))
    want_sum = reference.page_summaries(kc, torch.arange(P, device="cuda"), torch.full((P,), PAGE, device="cuda"))
    for a, b in zip((kmin, kmax, kmean), want_sum):
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)
    q = torch.randn(len(seqs), G * Hkv, d, generator=g).to(dtype).cuda()

    def step():
        s = index_scores.summary_block_scores(q, kmin, kmax, table, seq)
        sel = topk.topk_blocks(s, seq, 16)
        return s, sel, sparse_decode.sparse_decode(q, kc, vc, table, seq, sel)

    s, sel, out = step()
    want_s = reference.summary_block_scores(q, kmin, kmax, table, seq)
    torch.testing.assert_close(s[torch.isfinite(want_s)], want_s[torch.isfinite(want_s)], atol=1e-2, rtol=1e-4)
    assert torch.equal(sel.cpu(), reference.topk_blocks(s.cpu(), seq.cpu(), 16))
    want = reference.sparse_decode(q, kc, vc, table, seq, sel)
    assert _rel(out, want) < 1e-2
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        gs, gsel, gout = step()
    q.copy_(torch.randn(q.shape, generator=g).to(dtype).cuda())
    graph.replay()
    s2, sel2, out2 = step()
    assert torch.equal(gsel, sel2) and torch.equal(gout, out2)


@pytest.mark.gpu
def test_gpu_prefill_chunk_bf16():
    g = torch.Generator().manual_seed(22)
    kc, vc, table, _ = _cache(g, [40 * PAGE + 5], 4, 128, torch.bfloat16)
    positions = torch.arange(33 * PAGE - 200, 40 * PAGE + 5, dtype=torch.int32, device="cuda")
    rows, seq = reference.prefill_rows(table[0], positions)
    idx = torch.randn(kc.shape[0], PAGE, 128, generator=g).bfloat16().cuda()
    qi = torch.randn(positions.numel(), 4, 128, generator=g).bfloat16().cuda()
    scores = index_scores.index_block_scores(qi, idx, rows, seq)
    want_scores = reference.index_block_scores(qi, idx, rows, seq)
    torch.testing.assert_close(scores[torch.isfinite(want_scores)], want_scores[torch.isfinite(want_scores)], atol=1e-3, rtol=1e-4)
    sel = topk.topk_blocks(want_scores, seq, 16)
    q = torch.randn(positions.numel(), 28, 128, generator=g).bfloat16().cuda()
    got = sparse_decode.sparse_prefill(q, kc, vc, table[0], positions, sel)
    assert _rel(got, reference.sparse_prefill(q, kc, vc, table[0], positions, sel)) < 1e-2
