"""Context parallel on 2 GPUs (NCCL): the ranks' decode step captured in CUDA graphs gives the tokens of the general
(eager) context-parallel forward and bitwise the logits of the same step uncaptured, across a tail that outgrows its
buffer and a sync that makes every rank capture again; a frozen rank during a replay gives an error, not a hang.
Skipped without 2 CUDA devices (CPU ranks run the same step uncaptured in test_context_parallel.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from inference import cp_engine
from tests.inference.conftest import repo_files
from tests.multigpu.test_context_parallel import PROMPT, _forced_logits

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                                 reason="needs 2 CUDA devices")]
OPTIONS = dict(top_k_blocks=4, segment_cap=512, dtype="float32")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def ranks(msa_model):
    engine = cp_engine.start(str(msa_model), dict(OPTIONS), devices="0,1", timeout_s=120)
    engine.sync(repo_files(7, 12), [])
    yield engine
    engine.close()


def _complete(engine, decode: str, path: str = PROMPT[0]):
    engine.decode = decode
    text = "".join(engine.complete(path, PROMPT[1], PROMPT[2], max_tokens=16))
    return text, list(engine.last_ids), engine.last_stats["selected_blocks"]


@pytest.mark.parametrize("attention", ["sparse", "dense"])
def test_graph_tokens_equal_the_eager_forward(ranks, attention):
    ranks.attention = attention
    plain = _complete(ranks, "plain")
    assert _complete(ranks, "graph") == plain
    assert ranks.stats()["decode"] == {"mode": "graph", "path": "graph", "fallback": None}
    other = _complete(ranks, "plain", "pkg/live.py")
    assert _complete(ranks, "graph", "pkg/live.py") == other  # another view: the same graphs, new table contents
    ranks.sync([("pkg/new.py", "n", "def g(y):\n    return y\n" * 300)], [])  # pools may grow: all capture again
    eager = _complete(ranks, "plain", "pkg/live.py")
    assert _complete(ranks, "graph", "pkg/live.py") == eager
    assert _complete(ranks, "static", "pkg/live.py") == eager


def test_graph_replay_equals_the_uncaptured_step_bitwise(ranks):
    ranks.attention = "sparse"
    tokens = [5, 77, 120, 31, 250, 9, 64, 3] * 40  # the tail buffer grows on the way: rank 0 says capture again
    ranks.decode = "graph"
    graph, graph_sel = _forced_logits(ranks, tokens, fixed=True)
    assert ranks.stats()["decode"]["path"] == "graph"
    ranks.decode = "static"
    static, static_sel = _forced_logits(ranks, tokens, fixed=True)
    assert torch.equal(static, graph), f"max difference {float((static - graph).abs().max()):.3e}"
    assert int(static_sel[0]) == int(graph_sel[0]) and static_sel[1] == graph_sel[1]
    ranks.decode = "plain"
    plain, _ = _forced_logits(ranks, tokens, fixed=False)
    # the general forward scores blocks through other kernels: a near tie may select another block at a few steps
    rel = (plain - graph).abs().amax(-1) / plain.abs().amax(-1)
    assert float(rel.median()) < 1e-4 and int((rel > 1e-3).sum()) <= len(tokens) // 20, rel.tolist()


def test_local_collectives_switch_changes_results_and_switches_back(ranks):
    """The benchmark-only switch really removes the collectives (other ranks' parts go stale), and "nccl" after it
    captures again and gives the eager tokens."""
    ranks.attention = "sparse"
    eager = _complete(ranks, "plain", "pkg/mod3.py")
    ranks.collectives = "local"
    try:
        _complete(ranks, "graph", "pkg/mod3.py")
    finally:
        ranks.collectives = "nccl"
    assert _complete(ranks, "graph", "pkg/mod3.py") == eager


def test_a_frozen_rank_during_a_replay_is_an_error_not_a_hang(msa_model, tmp_path):
    """In its own process: a hung NCCL kernel stays on the GPU until that process ends."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {ROOT!r})
        from inference import cp_engine
        from inference.distributed import DistributedFailure
        from tests.inference.conftest import repo_files
        e = cp_engine.start({str(msa_model)!r}, {OPTIONS!r}, devices="0,1", timeout_s=10)
        e.sync(repo_files(7, 12), [])
        e.decode = "graph"
        list(e.complete("pkg/mod1.py", "def g(x):\\n    return", "\\n", max_tokens=4))  # captures the graphs
        ids = e._fim_ids("pkg/mod1.py", "def h(x):\\n    return", "\\n", 200)
        attn, key = e._repo_attention("pkg/mod1.py")
        e._prepare_tail(ids, ("frozen", key))
        e._run_tail(ids, 0, attn, "last")
        fast = e._begin_decoder(attn)
        slot = len(e._tail.ids)
        fast.step(7, slot, e.repo.tail_position() + slot)  # a replay with both ranks alive
        e._tail.ids.append(7)
        os.kill(e.followers[0].pid, signal.SIGSTOP)
        t = time.monotonic()
        try:
            slot += 1
            fast.step(8, slot, e.repo.tail_position() + slot)
            print("NO ERROR", flush=True)
        except DistributedFailure as exc:
            print("FAILURE after %.0f s: %s" % (time.monotonic() - t, exc), flush=True)
        e.close()
        os._exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert "FAILURE after" in proc.stdout and "did not finish" in proc.stdout, proc.stdout + proc.stderr[-3000:]
