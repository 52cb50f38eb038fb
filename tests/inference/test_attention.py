"""The CPU MSA path over a shared repository history against kernels.reference through kernels.ops."""

from __future__ import annotations

import pytest
import torch

from inference.attention import RepoAttention, RepoView
from kernels import ops
from tests.inference.conftest import random_page_pool


def _pool(index_dim: int):
    return random_page_pool(index_dim, (300, 1, 129, 700, 128, 77), seed=0)  # segments with partial last pages


@pytest.mark.parametrize("index_dim,mode", [(0, "minmax"), (0, "mean"), (16, "minmax")])
@pytest.mark.parametrize("top_k", [4, 9, 64])
def test_cpu_path_equals_reference(index_dim, mode, top_k):
    pool, pages = _pool(index_dim)
    view = RepoView.build(pool, pages)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(37, 6, 24, generator=g)
    index_q = torch.randn(37, 2, index_dim, generator=g) if index_dim else None
    ours = RepoAttention(pool, view, sparse=True, top_k=top_k, summary_mode=mode, use_kernels=False,
                         index_dtype=torch.float32)
    kern = RepoAttention(pool, view, sparse=True, top_k=top_k, summary_mode=mode, use_kernels=True)
    with ops.use_backend("reference"):
        want_out, want_lse = kern(1, q, index_q)
    got_out, got_lse = ours(1, q, index_q)
    torch.testing.assert_close(got_out, want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_lse, want_lse, atol=1e-5, rtol=1e-5)
    assert float(ours.stats.blocks) == float(kern.stats.blocks)
    assert ours.stats.mean_blocks == min(top_k - 1, view.n_blocks)


@pytest.mark.parametrize("context_dtype", [torch.float32, torch.bfloat16])
def test_cpu_dense_layer_equals_reference(context_dtype):
    """A dense layer on CPU reads the view's contiguous repository copy in context_dtype (made once per view):
    fp32 equals kernels.reference; bf16 is within bf16 rounding (see test_live_tail's bf16 context test)."""
    pool, pages = _pool(0)
    view = RepoView.build(pool, pages)
    g = torch.Generator().manual_seed(2)
    q = torch.randn(41, 6, 24, generator=g)
    ours = RepoAttention(pool, view, sparse=False, use_kernels=False, context_dtype=context_dtype)
    kern = RepoAttention(pool, view, sparse=False, use_kernels=True)
    with ops.use_backend("reference"):
        want_out, want_lse = kern(1, q, None)
    got_out, got_lse = ours(1, q, None)
    tol = dict(atol=1e-5, rtol=1e-5) if context_dtype == torch.float32 else dict(atol=2**-6, rtol=2**-6)
    torch.testing.assert_close(got_out, want_out, **tol)
    torch.testing.assert_close(got_lse, want_lse, **tol)
    k, v = view.contiguous(pool, 1, context_dtype)
    assert k.dtype == v.dtype == context_dtype and k.shape == (2, view.n_tokens, 24)
    again = ours(1, q[:1], None)[0]  # a decode step reuses the copy
    assert view.contiguous(pool, 1, context_dtype)[0] is k and again.shape == (1, 6, 24)


@pytest.mark.parametrize("T,N,offset,rows", [(1, 0, 0, 1024), (37, 0, 0, 1024), (37, 200, 0, 1024),
                                             (300, 130, 0, 64), (1, 90, 40, 1024), (5, 0, 33, 2), (70, 129, 9, 16)])
def test_segment_attention_equals_dense_parts_merged(T, N, offset, rows):
    from inference.attention import attend_dense, attend_segment, merge

    g = torch.Generator().manual_seed(T + N + offset)
    q = torch.randn(T, 6, 16, generator=g)
    k, v = torch.randn(2, offset + T, 16, generator=g), torch.randn(2, offset + T, 16, generator=g)
    kc, vc = torch.randn(2, N, 16, generator=g), torch.randn(2, N, 16, generator=g)
    want = merge([attend_dense(q, k, v, causal_start=offset)] + ([attend_dense(q, kc, vc)] if N else []))
    got = attend_segment(q, k, v, kc if N else None, vc if N else None, offset=offset, rows=rows)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 37])
def test_bf16_index_scores_select_the_fp32_blocks_away_from_ties(T):
    """bf16 index scores (the CPU default where bf16 matmul is native) pick the fp32 path's blocks for every query
    and group whose fp32 scores leave a clear gap at the top-k boundary; the rest only swap near-equal blocks."""
    from inference.attention import select_blocks, shared_block_scores

    pool, pages = _pool(16)
    view = RepoView.build(pool, pages)
    g = torch.Generator().manual_seed(T)
    q, index_q = torch.randn(T, 6, 24, generator=g), torch.randn(T, 2, 16, generator=g)
    fp32 = shared_block_scores(q, index_q, pool, 1, view, "minmax")
    bf16 = shared_block_scores(q, index_q, pool, 1, view, "minmax", score_dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32 and torch.equal(torch.isinf(bf16), torch.isinf(fp32))
    finite = torch.isfinite(fp32)
    torch.testing.assert_close(bf16[finite], fp32[finite], atol=0.05, rtol=0.02)
    for top_k in (3, 6, 9):
        want, got = select_blocks(fp32, top_k), select_blocks(bf16, top_k)
        ranked = fp32.sort(-1, descending=True).values
        gap = ranked[..., top_k - 2] - ranked[..., top_k - 1]
        clear = gap > 0.02 * ranked[..., 0].abs().clamp_min(1)  # bf16 keeps ~3 significant digits
        assert clear.float().mean() > (0.3 if T > 1 else 0)  # the exact check below covers a good share
        assert torch.equal(got.sort(-1).values[clear], want.sort(-1).values[clear])
        near = ~clear  # elsewhere a differing choice is one the fp32 scores rank about equal
        for t, h in near.nonzero().tolist():
            for block in set(got[t, h].tolist()) - set(want[t, h].tolist()):
                assert fp32[t, h, block] >= ranked[t, h, top_k - 2] - 0.04 * ranked[t, h, 0].abs().clamp_min(1)


def test_block_selection_breaks_ties_to_the_lower_block_as_a_full_sort():
    from inference.attention import select_blocks

    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (50, 2, 30), generator=g).float()  # many ties, also at the boundary
    scores[::7, :, 5:] = float("-inf")  # rows with fewer finite blocks than wanted
    for top_k in (2, 8, 16, 31, 40):
        got = select_blocks(scores, top_k)
        if top_k >= 31:
            assert torch.equal(got, torch.arange(30).expand(50, 2, 30))
            continue
        best = torch.sort(scores, dim=-1, descending=True, stable=True)
        want = best.indices[..., : top_k - 1].masked_fill(best.values[..., : top_k - 1] == float("-inf"), -1)
        assert torch.equal(got, want)


def test_block_selection_of_bf16_rounded_signed_scores_equals_a_full_sort():
    """Scores as the bf16 index branch gives them (few distinct values: ties everywhere), of both signs, with
    -0.0 next to +0.0 and some -inf: the same blocks in the same order as a full stable sort."""
    from inference.attention import select_blocks

    g = torch.Generator().manual_seed(5)
    scores = (torch.randn(37, 3, 403, generator=g) * 4).bfloat16().float()
    scores[:, :, 7] = -0.0
    scores[:, :, 9] = 0.0
    scores[5, 1, :] = float("-inf")
    scores[6, 0, 200:] = float("-inf")
    for top_k in (2, 16, 33):
        best = torch.sort(scores, dim=-1, descending=True, stable=True)
        want = best.indices[..., : top_k - 1].masked_fill(best.values[..., : top_k - 1] == float("-inf"), -1)
        assert torch.equal(select_blocks(scores, top_k), want)
