"""One-launch top-k from block scores (`kernels.score_select`) against `reference.topk_blocks` and the resolved
pages/counts, and the three-launch decode step (scores, select, merged attention) against the reference pipeline.

Without a GPU under TRITON_INTERPRET=1 on CPU tensors; the gpu case runs bf16 at 1M tokens and in a CUDA graph.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels import fused_decode, index_scores, reference, score_select  # noqa: E402

PAGE = reference.PAGE
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _expected(scores, table, seq, k, page_lens=None, **kw):
    sel = reference.topk_blocks(scores.cpu(), seq.cpu(), k, **kw)
    vis = reference.visible_counts(table.cpu(), seq.cpu(), None if page_lens is None else page_lens.cpu())
    s = sel.long()
    used = s >= 0
    pages = torch.where(used, table.cpu().long().gather(1, s.clamp(min=0).flatten(1)).view(s.shape), 0)
    counts = torch.where(used, vis.gather(1, s.clamp(min=0).flatten(1)).view(s.shape), 0)
    return sel, pages, counts


@pytest.mark.parametrize("k,local,sink", [(16, 1, 0), (4, 1, 0), (8, 2, 1)])
def test_select_matches_reference_with_ties_padding_and_partial_pages(k, local, sink):
    g = torch.Generator().manual_seed(80 + k)
    seqs = [0, 1, 97, 129, k * PAGE, k * PAGE + 1, 40 * PAGE + 7, 75 * PAGE]
    nb, H = 76, 3
    table = torch.stack([torch.randperm(90, generator=g)[:nb] for _ in seqs]).to(torch.int32)
    scores = torch.randint(-4, 5, (len(seqs), H, nb), generator=g).float()  # many exact ties
    scores[6, 1, torch.randperm(nb, generator=g)[:60]] = float("-inf")  # fewer finite candidates than picks
    seq = torch.tensor(seqs, dtype=torch.int32)
    plen = torch.randint(0, PAGE + 1, (90,), generator=g).to(torch.int32)
    for chunk, page_lens in ((16, plen), (512, None)):  # five chunks merged, one chunk
        got = score_select.score_select(scores.to(DEV), table.to(DEV), seq.to(DEV), k, local_blocks=local, sink_blocks=sink,
                                        chunk=chunk, page_lens=None if page_lens is None else page_lens.to(DEV))
        want = _expected(scores, table, seq, k, page_lens, local_blocks=local, sink_blocks=sink)
        for a, b in zip(got, want):
            assert torch.equal(a.cpu().long(), b.long())
    assert not fused_decode.counters(torch.device(DEV), 1, "select").any()  # every launch left its counters at 0


def test_three_launch_step_matches_the_reference_pipeline():
    g = torch.Generator().manual_seed(81)
    seqs = [300, 20 * PAGE + 1, 129]
    Hkv, G, d = 2, 3, 48
    nbs = [(s + PAGE - 1) // PAGE for s in seqs]
    P = sum(nbs) + 2
    perm = torch.randperm(P, generator=g).to(torch.int32)
    table = torch.full((len(seqs), max(nbs)), int(perm[-1]), dtype=torch.int32)
    used = 0
    for i, n in enumerate(nbs):
        table[i, :n] = perm[used : used + n]
        used += n
    kc, vc = (torch.randn(P, Hkv, PAGE, d, generator=g).half().to(DEV) for _ in range(2))
    plen = torch.randint(1, PAGE + 1, (P,), generator=g).to(torch.int32).to(DEV)
    kmin, kmax, _ = reference.page_summaries(kc, torch.arange(P, device=DEV), plen)
    table, seq = table.to(DEV), torch.tensor(seqs, dtype=torch.int32, device=DEV)
    q = torch.randn(len(seqs), G * Hkv, d, generator=g).half().to(DEV)
    scores = index_scores.summary_block_scores(q, kmin, kmax, table, seq, page_lens=plen, block_pages=8)
    sel, pages, counts = score_select.score_select(scores, table, seq, 6, page_lens=plen, chunk=8)
    out = fused_decode.sparse_decode_merged(q, kc, vc, table, seq, sel, page_lens=plen, pages=pages, counts=counts)
    want_scores = reference.summary_block_scores(q, kmin, kmax, table, seq, page_lens=plen)
    want_sel = reference.topk_blocks(want_scores.cpu(), seq.cpu(), 6)
    assert torch.equal(sel.cpu(), want_sel)
    want = reference.sparse_decode(q, kc, vc, table, seq, want_sel.to(DEV), page_lens=plen)
    assert ((out.float() - want.float()).norm() / want.float().norm()).item() < 2e-3


@pytest.mark.gpu
@pytest.mark.parametrize("n_tokens", [128 * 1000 + 1, 1 << 20])
def test_gpu_select_at_one_million_tokens_and_graph_replay(n_tokens):
    g = torch.Generator().manual_seed(82)
    Hkv, d, G = 4, 128, 7
    nb = (n_tokens + PAGE - 1) // PAGE
    table = torch.randperm(nb + 5, generator=g)[:nb].to(torch.int32)[None].cuda()
    kmin = torch.randn(nb + 5, Hkv, d, generator=g).bfloat16().cuda()
    kmax = kmin + torch.rand(nb + 5, Hkv, d, generator=g).bfloat16().cuda()
    q = torch.randn(1, G * Hkv, d, generator=g).bfloat16().cuda()
    seq = torch.tensor([n_tokens], dtype=torch.int32, device="cuda")

    def step():
        return score_select.score_select(index_scores.summary_block_scores(q, kmin, kmax, table, seq), table, seq, 16)

    scores = index_scores.summary_block_scores(q, kmin, kmax, table, seq)
    got = score_select.score_select(scores, table, seq, 16)
    for a, b in zip(got, _expected(scores, table, seq, 16)):
        assert torch.equal(a.cpu().long(), b.long())
    step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        gsel, _, _ = step()
    for _ in range(2):
        q.copy_(torch.randn(q.shape, generator=g).bfloat16().cuda())
        graph.replay()
        assert torch.equal(gsel, step()[0])
