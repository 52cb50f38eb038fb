"""Context parallel on CPU ranks (gloo): 2 and 3 ranks give the tokens and log-probabilities of one rank, for dense
and sparse attention, also after edits that move files between ranks, with generated tokens through the general
forward (decode "plain") and through the fixed-shape step that GPUs capture in a CUDA graph (decode "static": the
same step, uncaptured; tests/multigpu/test_cp_graph_gpu.py replays the graph)."""

from __future__ import annotations

import pytest
import torch

from inference import cp_engine
from inference.engine import Engine
from tests.inference.conftest import repo_files

@pytest.fixture(autouse=True)
def one_thread():
    """Every rank (and the one-rank reference) on one thread: CPU ranks do not oversubscribe the cores, and all
    GEMMs round alike, so blocks with tied scores (every file's first token sits at the same position) tie alike."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


OPTIONS = dict(top_k_blocks=4, segment_cap=512)  # few blocks per query: the selection matters


def _one_rank(model, **options) -> Engine:
    """The one-rank reference in fp32 as the ranks are: index-branch block scores and dense layers' repository
    attention (a lone CPU engine may do both in bf16 for speed, which rounds differently and orders near ties
    differently)."""
    engine = Engine(str(model), device="cpu", **options)
    inner = engine._repo_attention

    def repo_attention(live_path):
        attn, key = inner(live_path)
        attn.index_dtype = attn.context_dtype = torch.float32
        return attn, key

    engine._repo_attention = repo_attention
    return engine
PROMPT = ("pkg/mod1.py", "import os\n\ndef g(x):\n    return", "\n")


def _compare(one: Engine, many, attention: str) -> None:
    one.attention = many.attention = attention
    list(one.complete(*PROMPT, max_tokens=12))
    for decode in ("plain", "static"):
        many.decode = decode
        list(many.complete(*PROMPT, max_tokens=12))
        assert many.last_ids == one.last_ids, (attention, decode)
        assert many.last_stats["selected_blocks"] == one.last_stats["selected_blocks"], (attention, decode)
        assert many.last_stats["repo_blocks"] == one.last_stats["repo_blocks"]
        assert many.stats()["decode"] == {"mode": decode, "path": decode, "fallback": None}
    many.decode = "plain"
    text = "def h(y):\n    return y * 3 + 1\n" * 8
    a, b = one.score("pkg/other.py", text, 0, len(text)), many.score("pkg/other.py", text, 0, len(text))
    assert [t[:2] for t in a] == [t[:2] for t in b]
    worst = max(abs(x[2] - y[2]) for x, y in zip(a, b))
    assert worst < 1e-4, (attention, worst)


def _edit(files, owners: dict[str, int], loads: list[int]):
    """Drop every file of rank 0 but its smallest, edit the largest file of the busiest other rank (it must move to
    rank 0, now the least loaded), add a new file. Returns (files, dropped, moved path)."""
    sizes = {path: len(text) for path, _, text in files}
    on_zero = sorted((p for p, r in owners.items() if r == 0), key=sizes.get)
    dropped = on_zero[1:]
    busy = max(range(1, len(loads)), key=lambda r: loads[r])
    moved = max((p for p, r in owners.items() if r == busy), key=sizes.get)
    out = {path: (path, h, text) for path, h, text in files if path not in dropped}
    path, h, text = out[moved]
    out[moved] = (path, h + "e", text + "\ndef edited(z):\n    return z - 1\n" * 25)
    out["pkg/new.py"] = ("pkg/new.py", "hn", "import sys\n" + "x = 1\n" * 100)
    return list(out.values()), dropped, moved


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_match_one_rank_before_and_after_edits(msa_model, world):
    files = repo_files(7, 12)
    one = _one_rank(msa_model, **OPTIONS)
    many = cp_engine.start(str(msa_model), dict(OPTIONS), devices=",".join(["cpu"] * world), timeout_s=60)
    try:
        a, b = one.sync(files, []), many.sync(files, [])
        assert (b["segments"], b["tokens"]) == (a["segments"], a["tokens"])
        assert len(b["ranks"]) == world and all(r["tokens"] > 0 for r in b["ranks"])
        for attention in ("sparse", "dense"):
            _compare(one, many, attention)
        before = many.owners()
        edited, dropped, moved = _edit(files, before, [r["tokens"] for r in many.stats()["ranks"]])
        one.sync(edited, dropped)
        many.sync(edited, dropped)
        after = many.owners()
        assert not set(dropped) & set(after) and "pkg/new.py" in after
        assert before[moved] != 0 and after[moved] == 0, (moved, before, after)
        for attention in ("sparse", "dense"):
            _compare(one, many, attention)
        stems = {path.rsplit("/", 1)[-1].removesuffix(".py") for path, _, _ in edited}
        held = {stem: many.modules.names(stem) for stem in stems}  # member names follow the sharded repository
        assert held == {stem: one.modules.names(stem) for stem in stems} and any(held.values())
    finally:
        many.close()


def test_summary_selection_matches_one_rank(tiny_models):
    """A checkpoint without an index branch: blocks picked by page summaries (Quest bound) across ranks."""
    files = repo_files(6, 12)
    options = dict(OPTIONS, dense_layers=1)
    one = _one_rank(tiny_models["qwen2"], **options)
    many = cp_engine.start(str(tiny_models["qwen2"]), dict(options), devices="cpu,cpu", timeout_s=60)
    try:
        one.sync(files, [])
        many.sync(files, [])
        _compare(one, many, "sparse")
    finally:
        many.close()


def test_non_parallel_layout_is_refused(msa_model):
    with pytest.raises(ValueError, match="parallel"):
        cp_engine.start(str(msa_model), dict(OPTIONS, layout="sequential"), devices="cpu,cpu", timeout_s=20)


def _forced_logits(engine, tokens, fixed: bool):
    """Prefill the FIM prompt, then feed `tokens` one by one (the tail outgrows its buffer on the way): logits of
    each step, through the general forward or the fixed-shape step."""
    path = PROMPT[0]
    ids = engine._fim_ids(path, PROMPT[1], PROMPT[2], engine.tail_budget - 64)
    repo_attn, key = engine._repo_attention(path)
    engine._tail = None  # a fresh tail of the smallest capacity: it grows during the steps
    engine._prepare_tail(ids, ("forced", key))
    engine._run_tail(ids, 0, repo_attn, "last")
    fast = engine._begin_decoder(repo_attn) if fixed else None
    out = []
    for t in tokens:
        slot = len(engine._tail.ids)
        if fast is None:
            out.append(engine._run_tail([t], slot, repo_attn, "last")[-1])
        else:
            out.append(fast.step(t, slot, engine.repo.tail_position() + slot).clone())
            engine._tail.ids.append(t)
    return torch.stack(out), (fast.selection_counts() if fast else None)


@pytest.mark.parametrize("attention", ["sparse", "dense"])
def test_fixed_shape_step_over_ranks_matches_one_rank_logits(msa_model, attention):
    """Teacher-forced steps: every step's logits of the ranks' fixed-shape step equal one rank's general forward."""
    files = repo_files(7, 12)
    one = _one_rank(msa_model, attention=attention, **OPTIONS)
    many = cp_engine.start(str(msa_model), dict(OPTIONS, attention=attention, decode="static"), devices="cpu,cpu",
                           timeout_s=60)
    try:
        one.sync(files, [])
        many.sync(files, [])
        tokens = [5, 77, 120, 31, 250, 9, 64, 3] * 40  # 320 steps: the 256-slot tail buffer grows on the way
        want, _ = _forced_logits(one, tokens, fixed=False)
        got, (blocks, groups) = _forced_logits(many, tokens, fixed=True)
        err = float((got - want).abs().max() / want.abs().max())
        assert err < 1e-4, f"max relative error {err:.2e}"
        assert torch.equal(got.argmax(-1), want.argmax(-1))
        sparse_layers = sum(many.cfg.sparse_layers) if attention == "sparse" else 0
        assert groups == len(tokens) * sparse_layers * many.cfg.num_kv_heads
        if attention == "sparse":  # every history pick counted once, across ranks
            assert 0 < float(blocks) / groups <= many.top_k - 1
    finally:
        many.close()
