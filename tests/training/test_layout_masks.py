"""Parallel-layout rows: block-diagonal file masks, shared prefix, shared positions, the live tail; MSA selection."""

import random

import numpy as np
import torch

from inference.training.batches import BLOCK, SEGMENT_CAP, Encoder, RowBuilder, fim_split, visibility
from inference.training.model import MSAForTraining, causal_visible, select_blocks
from tests.training.conftest import synthetic_projects


def _row(tokenizer, seed=0, **kw):
    enc = Encoder(tokenizer)
    projects = synthetic_projects()
    builder = RowBuilder(enc, projects, {k: enc.many([f"<|file_sep|>{p}\n{t}" for p, t in v]) for k, v in projects.items()},
                         T=2048, seed=seed, causal_rate=0.0, **kw)
    return enc, builder.row()


def test_files_never_see_each_other_but_the_tail_sees_all(tokenizer):
    enc, row = _row(tokenizer)
    t = {k: torch.as_tensor(getattr(row, k))[None] for k in ("grp", "doc", "tail", "pad")}
    vis = visibility(t["grp"], t["doc"], t["tail"], t["pad"])[0]
    grp, doc, tail, pad = row.grp, row.doc, row.tail, row.pad
    real = np.flatnonzero(~pad)
    g0 = real[grp[real] == grp[real[0]]]
    docs = sorted(set(doc[g0]))
    assert docs[0] == 0 and len(docs) >= 3, "a prefix, context files and a tail"
    tail_doc = doc[g0][tail[g0]][0]
    for i in g0:
        for j in g0:
            expected = j <= i and (doc[i] == doc[j] or doc[j] == 0 or tail[i])
            assert bool(vis[i, j]) == expected, (i, j, doc[i], doc[j])
    # nothing in the group sees padding or another group's tokens
    assert pad.any() and not vis[np.ix_(real, np.flatnonzero(pad))].any()
    other = real[grp[real] != grp[real[0]]]
    assert not vis[np.ix_(g0, other)].any()
    assert tail_doc == max(docs)


def test_files_share_positions_after_the_prefix_and_start_on_block_boundaries(tokenizer):
    enc, row = _row(tokenizer)
    repo = enc.special["<|repo_name|>"]
    assert row.ids[0] == repo
    p = int(np.flatnonzero((row.doc[:BLOCK] == 0) & ~row.pad[:BLOCK]).size)
    starts = [i for i in range(1, len(row.ids)) if not row.pad[i] and row.doc[i] != row.doc[i - 1] or (row.pad[i - 1] and not row.pad[i])]
    context_starts = [i for i in starts if row.doc[i] > 0 and not row.tail[i] and row.grp[i] == row.grp[0]]
    assert context_starts and all(i % BLOCK == 0 for i in context_starts)
    assert all(row.pos[i] == p for i in context_starts), "every file segment starts right after the prefix"
    assert all(row.ids[i] == enc.special["<|file_sep|>"] for i in context_starts)
    tail_start = int(np.flatnonzero(row.tail)[0])
    assert tail_start % BLOCK == 0 and row.pos[tail_start] in {p, p + SEGMENT_CAP} | {row.pos[tail_start]}


def test_labels_stay_inside_their_segment(tokenizer):
    enc, row = _row(tokenizer)
    for i in range(len(row.ids) - 1):
        if row.labels[i] >= 0:
            assert row.ids[i + 1] == row.labels[i] and row.doc[i + 1] == row.doc[i] and not row.pad[i + 1]


def test_fim_tail_has_the_msa_format(tokenizer):
    enc, row = _row(tokenizer, fim_rate=1.0)
    tail = row.ids[row.tail]
    text = enc.tok.decode(tail.tolist(), skip_special_tokens=False)
    assert text.startswith("<|file_sep|>pkg") and text.endswith("<|endoftext|>")
    a, b, c = text.index("<|fim_prefix|>"), text.index("<|fim_suffix|>"), text.index("<|fim_middle|>")
    assert a < b < c


def test_fim_split_keeps_every_character():
    rng = random.Random(3)
    text = "line one\n    line two()\nthree = 3\n"
    for _ in range(50):
        pre, mid, suf = fim_split(text, rng)
        assert pre + mid + suf == text


def test_select_blocks_keeps_local_block_and_top_history():
    torch.manual_seed(0)
    T, block, topk = 8 * 16, 16, 3
    scores = torch.randn(1, 2, T, T)
    vis = causal_visible(T)
    chosen = select_blocks(scores, vis, block, topk)
    for i in [0, 17, 63, 127]:
        local = i // block
        for g in range(2):
            picked = chosen[0, g, i].nonzero().flatten().tolist()
            assert local in picked and max(picked) == local
            assert len(picked) == min(topk, local + 1)
            if local + 1 > topk:
                best = scores[0, g, i, : local * block].view(local, block).amax(-1).topk(topk - 1).indices
                assert sorted(best.tolist()) == sorted(p for p in picked if p != local)


def test_sparse_equals_dense_when_every_block_fits(tiny_config):
    tiny_config.block_size, tiny_config.topk_blocks = 16, 8
    model = MSAForTraining(tiny_config).eval()
    T = 96
    ids = torch.randint(0, 1000, (2, T))
    pos = torch.arange(T)[None].expand(2, T)
    dense, _ = model(ids, pos, causal_visible(T, 2), sparse=False)
    sparse, _ = model(ids, pos, causal_visible(T, 2), sparse=True)
    assert torch.allclose(dense, sparse, atol=1e-5)
    tiny_config.topk_blocks = 2
    model2 = MSAForTraining(tiny_config).eval()
    model2.load_state_dict(model.state_dict())
    fewer, _ = model2(ids, pos, causal_visible(T, 2), sparse=True)
    assert torch.allclose(fewer[:, :32], dense[:, :32], atol=1e-5) and not torch.allclose(fewer[:, 64:], dense[:, 64:], atol=1e-3)


def test_long_fim_tails_keep_their_structure(tokenizer):
    from inference.training.batches import TAIL_MAX, fim_tail

    enc = Encoder(tokenizer)
    text = "".join(f"def function_{i}(argument):\n    return argument + {i}\n\n" for i in range(400))
    rng = random.Random(0)
    for _ in range(20):
        ids, prompt_len, _ = fim_tail(enc, "pkg/long.py", text, rng)
        assert len(ids) <= TAIL_MAX
        decoded = enc.tok.decode(ids.tolist(), skip_special_tokens=False)
        assert decoded.startswith("<|file_sep|>pkg/long.py\n<|fim_prefix|>")
        assert decoded.count("<|fim_suffix|>") == 1 and decoded.count("<|fim_middle|>") == 1
        assert ids[prompt_len - 1] == enc.special["<|fim_middle|>"] and ids[-1] == enc.eot
