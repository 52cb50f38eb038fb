"""The CPU MSA path over a shared repository history against kernels.reference through kernels.ops."""

from __future__ import annotations

import pytest
import torch

from inference.attention import RepoAttention, RepoView
from inference.config import ModelConfig
from inference.kv_cache import PagePool
from kernels import ops


def _pool(index_dim: int):
    cfg = ModelConfig(family="qwen3", vocab_size=10, hidden_size=32, intermediate_size=32, num_layers=2,
                      num_q_heads=6, num_kv_heads=2, head_dim=24, index_dim=index_dim, index_rope_dim=index_dim // 2,
                      sparse_layers=(False, True))
    pool = PagePool(cfg, torch.device("cpu"), torch.float32, summaries=index_dim == 0, initial_pages=4)
    g = torch.Generator().manual_seed(0)
    pages = []
    for n in (300, 1, 129, 700, 128, 77):  # segments with partial last pages
        seg = pool.alloc((n + 127) // 128)
        for layer in range(2):
            pool.write(layer, seg, torch.randn(n, 2, 24, generator=g), torch.randn(n, 2, 24, generator=g),
                       torch.randn(n, index_dim, generator=g) if index_dim else None)
        pool.seal(seg, n)
        pages += seg
    return pool, pages[::-1]  # logical order differs from physical order


@pytest.mark.parametrize("index_dim,mode", [(0, "minmax"), (0, "mean"), (16, "minmax")])
@pytest.mark.parametrize("top_k", [4, 9, 64])
def test_cpu_path_equals_reference(index_dim, mode, top_k):
    pool, pages = _pool(index_dim)
    view = RepoView.build(pool, pages)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(37, 6, 24, generator=g)
    index_q = torch.randn(37, 2, index_dim, generator=g) if index_dim else None
    ours = RepoAttention(pool, view, sparse=True, top_k=top_k, summary_mode=mode, use_kernels=False)
    kern = RepoAttention(pool, view, sparse=True, top_k=top_k, summary_mode=mode, use_kernels=True)
    with ops.use_backend("reference"):
        want_out, want_lse = kern(1, q, index_q)
    got_out, got_lse = ours(1, q, index_q)
    torch.testing.assert_close(got_out, want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_lse, want_lse, atol=1e-5, rtol=1e-5)
    assert float(ours.stats.blocks) == float(kern.stats.blocks)
    assert ours.stats.mean_blocks == min(top_k - 1, view.n_blocks)


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
