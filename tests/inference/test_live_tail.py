"""The live tail on CPU: batched sparse prefill equals token-by-token decoding and kernels.reference, reuse of
the previous request's tail KV equals a fresh prefill, and a repository change the tail read invalidates it."""

from __future__ import annotations

import pytest
import torch

from inference.attention import (RepoView, attend_context, attend_dense, attend_own, attend_selected, select_blocks,
                                 shared_block_scores)
from inference.engine import SNAP_TOKENS, Engine
from kernels import reference as ref
from tests.inference.conftest import repo_files
from tests.inference.test_attention import _pool

LIVE = "pkg/live.py"
PREFIX = "import os\n\n" + "".join(f"def g{j}(x):\n    return x + {j}\n" for j in range(12)) + "def total(x):\n    return "
SUFFIX = "\n\nprint(total(3))\n"


@pytest.mark.parametrize("T,N", [(1, 5), (7, 300), (33, 129)])
def test_context_attention_equals_dense(T, N):
    g = torch.Generator().manual_seed(T * N)
    q, k, v = torch.randn(T, 6, 24, generator=g), torch.randn(2, N, 24, generator=g), torch.randn(2, N, 24, generator=g)
    got_out, got_lse = attend_context(q, k, v)
    want_out, want_lse = attend_dense(q, k, v)
    torch.testing.assert_close(got_out, want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_lse, want_lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk_elems", [1 << 22, 4096])  # one chunk of query rows, or many
@pytest.mark.parametrize("T,Hq,Hkv,N,d", [(1, 6, 2, 5, 24), (7, 6, 2, 300, 24), (33, 6, 3, 1297, 40),
                                         (130, 4, 2, 4099, 64)])
def test_bf16_context_attention_equals_dense_within_bf16_rounding(T, Hq, Hkv, N, d, chunk_elems, monkeypatch):
    """bf16 k, v (the dense layers' repository copy where the CPU multiplies bf16 natively) against attend_dense in
    fp32. bf16 keeps 8 significant bits: each rounding (queries, keys, values, scores, weights) is at most 2^-9
    relative, so out (a weighted mean of values |v| < ~4) and lse (|lse| < ~10 here) stay within ~2^-6; and the
    error is at most a few times what rounding q, k, v alone to bf16 (as the GPU path stores them) costs."""
    import inference.attention as attention

    monkeypatch.setattr(attention, "_CONTEXT_ELEMS", chunk_elems)
    g = torch.Generator().manual_seed(T * N + d)
    q, k, v = (torch.randn(*shape, generator=g) for shape in ((T, Hq, d), (Hkv, N, d), (Hkv, N, d)))
    got_out, got_lse = attend_context(q, k.bfloat16(), v.bfloat16())
    want_out, want_lse = attend_dense(q, k, v)
    assert got_out.dtype == got_lse.dtype == torch.float32
    torch.testing.assert_close(got_out, want_out, atol=2**-6, rtol=2**-6)
    torch.testing.assert_close(got_lse, want_lse, atol=2**-6, rtol=2**-8)
    rounded_out, rounded_lse = attend_dense(*(x.bfloat16().float() for x in (q, k, v)))
    assert (got_out - want_out).abs().max() <= 4 * (rounded_out - want_out).abs().max() + 2**-9
    assert (got_lse - want_lse).abs().max() <= 4 * (rounded_lse - want_lse).abs().max() + 2**-9


@pytest.mark.parametrize("T,start", [(1, 0), (1, 40), (2, 0), (37, 0), (37, 5), (130, 300)])
def test_own_tail_attention_equals_dense(T, start):
    g = torch.Generator().manual_seed(T + start)
    q = torch.randn(T, 6, 24, generator=g)
    k, v = torch.randn(2, 400, 24, generator=g), torch.randn(2, 400, 24, generator=g)
    k, v = k[:, : start + T], v[:, : start + T]  # views into a bigger buffer, like the tail's
    got_out, got_lse = attend_own(q, k, v, start)
    want_out, want_lse = attend_dense(q, k, v, causal_start=start)
    torch.testing.assert_close(got_out, want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_lse, want_lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("min_rows,steps", [(1, 0), (4, 2), (16, 0), (2, 5)])
@pytest.mark.parametrize("T", [1, 3, 41])
@pytest.mark.parametrize("top_k", [3, 6])
def test_block_major_sparse_attention_equals_reference(T, min_rows, steps, top_k):
    pool, pages = _pool(16)
    view = RepoView.build(pool, pages)
    g = torch.Generator().manual_seed(min_rows + steps + top_k + T)
    q, index_q = torch.randn(T, 6, 24, generator=g), torch.randn(T, 2, 16, generator=g)
    selected = select_blocks(shared_block_scores(q, index_q, pool, 1, view, "minmax"), top_k)
    selected[T // 2, 1] = -1  # a query and group with nothing selected reads nothing
    got_out, got_lse = attend_selected(q, pool, 1, view, selected, min_rows=min_rows, steps=steps)
    block_rows, seq_lens = ref.prefill_rows(view.block_table, torch.full((T,), view.n_blocks * 128))
    want_out, want_lse = ref.sparse_decode(q, pool.k[1], pool.v[1], block_rows, seq_lens, selected.int(),
                                           page_lens=pool.page_lens, return_lse=True)
    torch.testing.assert_close(got_out, want_out.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_lse, want_lse, atol=1e-5, rtol=1e-5)
    assert torch.isinf(got_lse[T // 2, 3:]).all() and (got_out[T // 2, 3:] == 0).all()


@pytest.fixture(scope="module")
def sparse_engine(msa_model):
    e = Engine(str(msa_model), top_k_blocks=3, live_window=(4000, 4000))  # 2 of many blocks per query
    e.sync(repo_files(6, lines=40), [])
    assert e.repo.view(LIVE).n_blocks > 8
    return e


def _fresh_logits(engine, ids, path=LIVE, context_dtype=None):
    repo_attn, key = engine._repo_attention(path)
    repo_attn.context_dtype = context_dtype
    engine._prepare_tail([], None)
    return engine._run_tail(ids, 0, repo_attn, "all"), repo_attn, key


@pytest.mark.parametrize("context_dtype", [torch.float32, torch.bfloat16])
def test_batched_sparse_tail_prefill_equals_token_by_token(sparse_engine, context_dtype):
    """fp32 dense layers: equal up to fp32 rounding. bf16 (the default where the CPU multiplies bf16 natively): a
    bf16 product may round a score differently for a row alone than among others, so within bf16 rounding."""
    e = sparse_engine
    ids = e._fim_ids(LIVE, PREFIX, SUFFIX, e.tail_budget)
    batched, repo_attn, _ = _fresh_logits(e, ids, context_dtype=context_dtype)
    e._prepare_tail([], None)
    stepped = torch.cat([e._run_tail([t], i, repo_attn, "last") for i, t in enumerate(ids)])
    tol = 1e-4 if context_dtype == torch.float32 else 2**-6
    torch.testing.assert_close(stepped, batched, atol=tol, rtol=tol)
    assert repo_attn.stats.mean_blocks == 2.0  # every query really chose 2 of the repository's blocks


def test_last_query_only_prompt_equals_every_row(sparse_engine):
    """A prompt asked for its last logits runs the last layer's attention and MLP for the last token only: the same
    logits as the full forward's last row, from an empty tail and after a reused part of it."""
    e = sparse_engine
    ids = e._fim_ids(LIVE, PREFIX, SUFFIX, e.tail_budget)
    full, repo_attn, _ = _fresh_logits(e, ids)
    for reuse in (0, 9):
        e._prepare_tail([], None)
        if reuse:
            e._run_tail(ids[:reuse], 0, repo_attn, "none")
        last = e._run_tail(ids[reuse:], reuse, repo_attn, "last")
        assert last.shape == (1, full.shape[-1])
        torch.testing.assert_close(last[0], full[-1], atol=1e-4, rtol=1e-4)


def _request(engine, prefix, suffix=SUFFIX):
    """Last logits of a FIM request through the engine's reuse path, and how many tail tokens it reused."""
    ids = engine._fim_ids(LIVE, prefix, suffix, engine.tail_budget)
    repo_attn, key = engine._repo_attention(LIVE)
    reuse = engine._prepare_tail(ids, key)
    return engine._run_tail(ids[reuse:], reuse, repo_attn, "last")[-1], reuse, ids


def test_reused_tail_equals_fresh_prefill_and_survives_live_file_sync(sparse_engine):
    e = sparse_engine
    _request(e, PREFIX)
    e.sync([(LIVE, "v1", PREFIX + "x" + SUFFIX)], [])  # the server mirrors the keystroke into the cache
    logits, reuse, ids = _request(e, PREFIX + "x")
    assert 0 < reuse < len(ids) - len(e.tok.encode(SUFFIX))
    fresh, _, _ = _fresh_logits(e, ids)
    torch.testing.assert_close(logits, fresh[-1], atol=1e-4, rtol=1e-4)
    e.sync([], [LIVE])


@pytest.mark.parametrize("change", ["edit", "drop"])
def test_repository_change_invalidates_the_tail(sparse_engine, change):
    e = sparse_engine
    files = repo_files(6, lines=40)
    _request(e, PREFIX)
    path, _, text = files[2]
    e.sync([(path, "edited", text + "def extra():\n    return 1\n")] if change == "edit" else [], [path] if change == "drop" else [])
    logits, reuse, ids = _request(e, PREFIX)
    assert reuse == 0
    fresh, _, _ = _fresh_logits(e, ids)
    torch.testing.assert_close(logits, fresh[-1], atol=1e-4, rtol=1e-4)
    e.sync(files, [])


def test_long_prefix_left_edge_moves_in_steps(msa_model):
    e = Engine(str(msa_model), live_window=(100, 20))
    assert e.info()["live_window"] == [100, 20]
    body = "".join(f"value_{j} = compute({j})\n" for j in range(200))
    prompts = [e._fim_ids(LIVE, body + "total = value_1 +"[:n], SUFFIX, e.tail_budget) for n in range(1, 18)]
    assert all(len(p) <= 100 + 20 + 8 for p in prompts)
    header = len(e.tok.encode(e.fim.tail(LIVE, "", "")[0][1]))
    moves = sum(1 for a, b in zip(prompts, prompts[1:]) if a[: header + 30] != b[: header + 30])
    assert moves <= 1  # 17 keystrokes, a few tokens: the left edge jumps at most once (SNAP_TOKENS at a time)
    assert SNAP_TOKENS > 8
