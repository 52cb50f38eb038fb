"""The fixed-shape decode step (inference/decode_graph.py) against the general per-token forward.

CPU, fp32: the same logits step by step (teacher-forced tokens, the tail outgrowing its capacity on the way) and
the same completions through Engine.complete, for dense and MSA-sparse attention, with and without QK-norm and an
MSA index branch. GPU: the CUDA graph's replays give bitwise the logits of the same step run eagerly.
"""

from __future__ import annotations

import pytest
import torch

from tests.inference.conftest import add_index_branch, build_model, repo_files
from inference.decode_graph import GraphDecoder
from inference.engine import Engine, _Tail

PREFIX, SUFFIX = "import os\n\ndef total(x):\n    return ", "\n\nprint(total(3))\n"
FORCED = [5, 77, 120, 31, 250, 9]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode-graph")
    build_model(root / "qwen2", "qwen2", layers=2, seed=0)
    build_model(root / "qwen3", "qwen3", layers=2, seed=6)
    build_model(root / "msa", "qwen2", layers=3, seed=7)
    add_index_branch(root / "msa")
    return root


_ENGINES: dict = {}


def _engine(path, attention, device="cpu", decode="plain"):
    """CPU engines are shared by the tests of this module (decode mode set per call; the repository synced once)."""
    key = (str(path), attention)
    if device == "cpu" and key in _ENGINES:
        _ENGINES[key].decode = decode
        return _ENGINES[key]
    e = Engine(str(path), device=device, dtype=torch.float32, attention=attention, segment_cap=256, top_k_blocks=3,
               decode=decode)
    e.sync(repo_files(6, 20), [])
    if device == "cpu":
        _ENGINES[key] = e
    return e


def _forced_logits(engine, fixed: bool, capture: bool = False, tokens=FORCED):
    """Prefill the FIM prompt, then feed `tokens` one by one; logits of each step [len(tokens), V]."""
    path = "pkg/live.py"
    ids = engine._fim_ids(path, PREFIX, SUFFIX, engine.tail_budget - 64)
    repo_attn, _ = engine._repo_attention(path)
    repo_attn.index_dtype = torch.float32  # the fixed-shape step scores in fp32 (kernels.ops); the CPU default may be bf16
    repo_attn.context_dtype = torch.float32  # and attends dense layers in fp32
    engine._tail = _Tail(engine.model, engine.device, engine.dtype, len(ids) + 3)  # outgrown after 3 steps
    engine._run_tail(ids, 0, repo_attn, "last")
    tail = engine._tail
    if fixed:
        dec = GraphDecoder(engine.model, engine.pool, capture=capture)
        dec.begin(tail, repo_attn.view, sparse=repo_attn.sparse, top_k=engine.top_k, summary_mode=engine.summary_mode)
    out = []
    for t in tokens:
        slot = len(engine._tail.ids)
        if fixed:
            out.append(dec.step(t, slot, engine.repo.tail_position() + slot).clone())
            engine._tail.ids.append(t)
        else:
            out.append(engine._run_tail([t], slot, repo_attn, "last")[-1])
    assert engine._tail.capacity >= len(ids) + len(tokens) > len(ids) + 3
    return torch.stack(out), (dec.selection_counts() if fixed else None)


@pytest.mark.parametrize("name,attention", [("qwen2", "sparse"), ("qwen2", "dense"), ("qwen3", "sparse"),
                                            ("msa", "sparse"), ("msa", "dense")])
def test_fixed_shape_step_matches_the_general_forward(models, name, attention):
    engine = _engine(models / name, attention)
    assert engine.repo.view("pkg/live.py").n_blocks > engine.top_k  # the selection really drops blocks
    want, _ = _forced_logits(engine, fixed=False)
    got, (blocks, groups) = _forced_logits(engine, fixed=True)
    err = float((got - want).abs().max() / want.abs().max())
    assert err < 1e-5, f"max relative error {err:.2e}"
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    sparse_layers = sum(engine.cfg.sparse_layers) if attention == "sparse" else 0
    assert groups == len(FORCED) * sparse_layers * engine.cfg.num_kv_heads
    if sparse_layers:  # top_k - 1 repository blocks per group and step (the local block is the tail)
        assert int(blocks) == groups * (engine.top_k - 1)


@pytest.mark.parametrize("attention", ["sparse", "dense"])
def test_completions_are_the_same_with_the_fixed_shape_step(models, attention):
    engine = _engine(models / "qwen2", attention)
    for kw in (dict(max_tokens=10), dict(max_tokens=10, temperature=1.0, top_k=40, seed=3)):
        runs = {}
        for decode in ("plain", "static", "plain"):  # the second plain run reuses the static run's tail
            engine.decode = decode
            text = "".join(engine.complete("pkg/mod2.py", PREFIX, SUFFIX, **kw))
            runs.setdefault(decode, []).append((text, list(engine.last_ids), engine.last_stats["selected_blocks"]))
            assert engine.last_stats["generated_tokens"] > 1
        assert runs["plain"][0] == runs["static"][0] == runs["plain"][1]


def test_decode_mode_is_checked(models):
    with pytest.raises(ValueError, match="decode must be"):
        Engine(str(models / "qwen2"), device="cpu", decode="fast")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Engine(str(models / "qwen2"), device="cpu", decode="graph")
    assert Engine(str(models / "qwen2"), device="cpu").decode == "plain"


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["qwen2", "msa"])
@pytest.mark.parametrize("attention", ["sparse", "dense"])
def test_graph_replay_equals_the_eager_step_bitwise(models, name, attention):
    engine = _engine(models / name, attention, device="cuda", decode="static")
    eager, eager_sel = _forced_logits(engine, fixed=True, capture=False)
    graph, graph_sel = _forced_logits(engine, fixed=True, capture=True)
    assert torch.equal(eager, graph), f"max difference {float((eager - graph).abs().max()):.3e}"
    assert int(eager_sel[0]) == int(graph_sel[0]) and eager_sel[1] == graph_sel[1]
    plain, _ = _forced_logits(engine, fixed=False)
    assert float((plain - graph).abs().max() / plain.abs().max()) < 1e-3


@pytest.mark.gpu
def test_graph_completions_match_static_ones_on_the_gpu(models):
    static = _engine(models / "msa", "sparse", device="cuda", decode="static")
    graph = _engine(models / "msa", "sparse", device="cuda", decode="graph")
    for path in ("pkg/mod2.py", "pkg/live.py", "pkg/mod2.py"):  # a new view re-uses the captured graph
        a = "".join(static.complete(path, PREFIX, SUFFIX, max_tokens=12))
        b = "".join(graph.complete(path, PREFIX, SUFFIX, max_tokens=12))
        assert (a, static.last_ids) == (b, graph.last_ids)
    graph.sync([("pkg/new.py", "n", "def g(y):\n    return y\n" * 40)], [])  # the pool may grow: capture again
    b = "".join(graph.complete("pkg/live.py", PREFIX, SUFFIX, max_tokens=12))
    static.sync([("pkg/new.py", "n", "def g(y):\n    return y\n" * 40)], [])
    a = "".join(static.complete("pkg/live.py", PREFIX, SUFFIX, max_tokens=12))
    assert (a, static.last_ids) == (b, graph.last_ids)
