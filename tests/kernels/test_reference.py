"""The pure-torch references against independent brute-force definitions (contiguous K/V, per-token loops)."""

import torch

from kernels import reference as ref

PAGE = ref.PAGE


def _paged(seq_len, Hkv, d, *, extra_pages=3, dtype=torch.float32, gen=None):
    """A random cache holding one sequence of seq_len tokens at permuted physical pages, plus its contiguous K/V."""
    nb = max(1, (seq_len + PAGE - 1) // PAGE)
    num_pages = nb + extra_pages
    k_cache = torch.randn(num_pages, Hkv, PAGE, d, generator=gen).to(dtype)
    v_cache = torch.randn(num_pages, Hkv, PAGE, d, generator=gen).to(dtype)
    table = torch.randperm(num_pages, generator=gen)[:nb].to(torch.int32)
    K = k_cache[table.long()].permute(1, 0, 2, 3).reshape(Hkv, nb * PAGE, d)[:, :seq_len]
    V = v_cache[table.long()].permute(1, 0, 2, 3).reshape(Hkv, nb * PAGE, d)[:, :seq_len]
    return k_cache, v_cache, table, K, V


def test_dense_decode_matches_sdpa_on_contiguous_keys():
    g = torch.Generator().manual_seed(0)
    for seq_len, Hq, Hkv, d in [(1, 4, 4, 64), (129, 8, 2, 64), (300, 28, 4, 128)]:
        k_cache, v_cache, table, K, V = _paged(seq_len, Hkv, d, gen=g)
        q = torch.randn(1, Hq, d, generator=g)
        out = ref.dense_decode(q, k_cache, v_cache, table[None], torch.tensor([seq_len]))
        Kr = K.repeat_interleave(Hq // Hkv, 0)
        Vr = V.repeat_interleave(Hq // Hkv, 0)
        want = torch.softmax((q[0][:, None, :] @ Kr.transpose(1, 2)) / d**0.5, -1) @ Vr
        torch.testing.assert_close(out[0], want[:, 0], atol=1e-5, rtol=1e-5)


def test_sparse_decode_is_dense_attention_restricted_to_selected_blocks():
    g = torch.Generator().manual_seed(1)
    seq_len, Hq, Hkv, d = 700, 6, 2, 64
    k_cache, v_cache, table, K, V = _paged(seq_len, Hkv, d, gen=g)
    q = torch.randn(1, Hq, d, generator=g)
    selected = torch.tensor([[[4, 0, 5, -1], [2, 5, -1, -1]]], dtype=torch.int32)
    out, lse = ref.sparse_decode(q, k_cache, v_cache, table[None], torch.tensor([seq_len]), selected, return_lse=True)
    for h in range(Hq):
        grp = h // (Hq // Hkv)
        toks = torch.cat([torch.arange(b * PAGE, min(seq_len, b * PAGE + PAGE)) for b in selected[0, grp].tolist() if b >= 0])
        s = K[grp, toks] @ q[0, h] / d**0.5
        torch.testing.assert_close(out[0, h], torch.softmax(s, 0) @ V[grp, toks], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lse[0, h], torch.logsumexp(s, 0), atol=1e-5, rtol=1e-5)


def test_index_scores_are_per_block_max_and_skip_local_block():
    g = torch.Generator().manual_seed(2)
    seq_len, Hkv, di = 515, 3, 32
    nb = (seq_len + PAGE - 1) // PAGE
    idx_cache = torch.randn(nb + 2, PAGE, di, generator=g)
    table = torch.randperm(nb + 2, generator=g)[: nb + 1].to(torch.int32)  # one spare logical slot
    q = torch.randn(1, Hkv, di, generator=g)
    scores = ref.index_block_scores(q, idx_cache, table[None], torch.tensor([seq_len]))
    assert scores.shape == (1, Hkv, nb + 1)
    for b in range(nb + 1):
        for h in range(Hkv):
            if b >= (seq_len - 1) // PAGE:
                assert scores[0, h, b] == float("-inf")
            else:
                want = (idx_cache[table[b]] @ q[0, h]).max()
                torch.testing.assert_close(scores[0, h, b], want)


def test_partial_pages_are_masked_everywhere():
    g = torch.Generator().manual_seed(3)
    Hkv, d = 2, 64
    k_cache, v_cache, table, K, V = _paged(3 * PAGE + 5, Hkv, d, gen=g)
    page_lens = torch.full((k_cache.shape[0],), PAGE, dtype=torch.int32)
    page_lens[table[1]] = 7  # block 1 holds only 7 tokens (a segment's last page)
    page_lens[table[2]] = 0  # block 2 is empty
    q = torch.randn(1, 4, d, generator=g)
    seq = torch.tensor([3 * PAGE + 5])
    out = ref.dense_decode(q, k_cache, v_cache, table[None], seq, page_lens=page_lens)
    toks = torch.cat([torch.arange(0, PAGE), torch.arange(PAGE, PAGE + 7), torch.arange(3 * PAGE, 3 * PAGE + 5)])
    for h in range(4):
        s = K[h // 2, toks] @ q[0, h] / d**0.5
        torch.testing.assert_close(out[0, h], torch.softmax(s, 0) @ V[h // 2, toks], atol=1e-5, rtol=1e-5)
    kmin = torch.randn(k_cache.shape[0], Hkv, d, generator=g)
    scores = ref.summary_block_scores(q, kmin, kmin + 1, table[None], seq, page_lens=page_lens)
    assert torch.isfinite(scores[0, :, :2]).all() and (scores[0, :, 2:] == float("-inf")).all()


def test_topk_tie_break_local_last_and_padding():
    seq = torch.tensor([18 * PAGE, 5 * PAGE + 1, 1, 0])
    scores = torch.zeros(4, 2, 20)
    sel = ref.topk_blocks(scores, seq, k=16)
    assert sel[0, 0].tolist() == list(range(15)) + [17]
    assert sel[1, 1].tolist() == [0, 1, 2, 3, 4, 5] + [-1] * 10
    assert sel[2, 0].tolist() == [0] + [-1] * 15
    assert sel[3, 0].tolist() == [-1] * 16
    scores[0, 1, 16] = 5.0
    scores[0, 1, 3] = float("-inf")
    scores[0, 1, 17] = 99.0  # the local block's own slot is ignored
    sel = ref.topk_blocks(scores, seq, k=16)
    assert sel[0, 1].tolist() == [16, 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17]


def test_topk_sinks_and_several_local_blocks_and_empty_history():
    seq = torch.tensor([40 * PAGE])
    scores = torch.arange(40.0).expand(1, 1, 40).clone()
    sel = ref.topk_blocks(scores, seq, k=8, local_blocks=2, sink_blocks=1)
    assert sel[0, 0].tolist() == [0, 37, 36, 35, 34, 33, 38, 39]
    scores[0, 0, :] = float("-inf")
    scores[0, 0, 5] = 1.0
    sel = ref.topk_blocks(scores, seq, k=8)
    assert sel[0, 0].tolist() == [5, 39, -1, -1, -1, -1, -1, -1]


def test_summaries_bound_the_true_max_and_mean_mode_uses_mean_keys():
    g = torch.Generator().manual_seed(4)
    Hq, Hkv, d = 8, 2, 64
    k_cache, _, table, K, _ = _paged(5 * PAGE, Hkv, d, gen=g)
    lens = torch.full((k_cache.shape[0],), PAGE, dtype=torch.int32)
    kmin, kmax, kmean = (torch.zeros(k_cache.shape[0], Hkv, d) for _ in range(3))
    ref.write_page_summaries(k_cache, kmin, kmax, kmean, table.long(), lens[table.long()])
    q = torch.randn(1, Hq, d, generator=g)
    seq = torch.tensor([5 * PAGE])
    bound = ref.summary_block_scores(q, kmin, kmax, table[None], seq)
    mean = ref.summary_block_scores(q, None, None, table[None], seq, kmean=kmean, mode="mean")
    for b in range(4):
        toks = slice(b * PAGE, b * PAGE + PAGE)
        true_max = sum((K[h // 4, toks] @ q[0, h]).max() for h in range(4))  # group 0
        assert bound[0, 0, b] >= true_max - 1e-4
        want_mean = sum(K[h // 4, toks].mean(0) @ q[0, h] for h in range(4))
        torch.testing.assert_close(mean[0, 0, b], want_mean, atol=1e-4, rtol=1e-4)
    lo, hi, mu = ref.page_summaries(k_cache, table[:1].long(), torch.tensor([3]))
    torch.testing.assert_close(lo[0], K[:, :3].amin(1))
    torch.testing.assert_close(mu[0], K[:, :3].mean(1))


def test_prefill_rows_and_merge_partials():
    g = torch.Generator().manual_seed(5)
    T, Hq, Hkv, d = 5, 4, 2, 64
    k_cache, v_cache, table, K, V = _paged(3 * PAGE, Hkv, d, gen=g)
    positions = torch.tensor([0, 127, 128, 200, 383])
    q = torch.randn(T, Hq, d, generator=g)
    sel = torch.arange(3, dtype=torch.int32).expand(T, Hkv, 3)
    out = ref.sparse_prefill(q, k_cache, v_cache, table, positions, sel)
    for t, p in enumerate(positions.tolist()):
        for h in range(Hq):
            s = K[h // 2, : p + 1] @ q[t, h] / d**0.5
            torch.testing.assert_close(out[t, h], torch.softmax(s, 0) @ V[h // 2, : p + 1], atol=1e-5, rtol=1e-5)
    # splitting the blocks in two parts and merging gives the whole
    rows, seq = ref.prefill_rows(table, positions)
    a = ref.sparse_decode(q, k_cache, v_cache, rows, seq, sel[..., :1].contiguous(), return_lse=True)
    b = ref.sparse_decode(q, k_cache, v_cache, rows, seq, sel[..., 1:].contiguous(), return_lse=True)
    merged, _ = ref.merge_partials(torch.stack([a[0], b[0]]), torch.stack([a[1], b[1]]))
    torch.testing.assert_close(merged, out, atol=1e-5, rtol=1e-5)
