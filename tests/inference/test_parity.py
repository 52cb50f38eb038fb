"""Our loader and KV-cached decode against the pinned `transformers` on tiny random checkpoints."""

from __future__ import annotations

import pytest
import torch

from tests.inference.conftest import build_model
from inference.checkpoint import load_model
from inference.engine import Engine
from inference.model import causal_attend

FAMILIES = ("llama", "qwen2", "qwen3")


def _rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shard,tied", [(False, False), (True, True)])
def test_logits_match_transformers(tmp_path, family, shard, tied):
    hf = build_model(tmp_path / family, family, layers=3, shard=shard, tied=tied)
    if shard:
        assert (tmp_path / family / "model.safetensors.index.json").is_file()
    ours = load_model(tmp_path / family, device=torch.device("cpu"), dtype=torch.float32)
    ids = torch.randint(0, 300, (41,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = ours(ids, torch.arange(41), causal_attend)
    with torch.no_grad():
        want = hf(ids[None]).logits[0]
    assert _rel_err(got, want) < 1e-4, f"max rel err {_rel_err(got, want):.2e}"


@pytest.mark.parametrize("rope", [
    {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 512, "rope_theta": 500000.0},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512, "rope_theta": 10000.0},
])
def test_rope_scaling_matches_transformers(tmp_path, rope):
    hf = build_model(tmp_path / "m", "llama", rope=rope)
    ours = load_model(tmp_path / "m", device=torch.device("cpu"), dtype=torch.float32)
    ids = torch.randint(0, 300, (17,), generator=torch.Generator().manual_seed(2))
    positions = torch.arange(1500, 1517)  # far positions: scaling matters there
    with torch.no_grad():
        got = ours(ids, positions, causal_attend)
    with torch.no_grad():
        want = hf(ids[None], position_ids=positions[None]).logits[0]
    assert _rel_err(got, want) < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_decode_matches_transformers_generate(tiny_models, family, monkeypatch):
    """sequential layout + dense: the cached repository, the tail prompt and our KV-cached decode give the
    tokens transformers' generate gives for the one concatenated sequence (in fp32: the dense layers' repository
    attention too, which is bf16 by default on CPUs that multiply bf16 natively)."""
    from transformers import AutoModelForCausalLM

    import inference.attention

    monkeypatch.setattr(inference.attention, "CPU_CONTEXT_DTYPE", torch.float32)
    engine = Engine(str(tiny_models[family]), layout="sequential", attention="dense")
    files = [("a.py", "1", "def add(a, b):\n    return a + b\n"), ("b.py", "2", "import os\nvalue = add(1, 2)\n")]
    engine.sync(files, [])
    text = "".join(engine.complete("c.py", "for i in range(", "):\n    pass\n", max_tokens=12))
    hf = AutoModelForCausalLM.from_pretrained(str(tiny_models[family]), dtype=torch.float32).eval()
    tok, fmt = engine.tok, engine.fim
    ids = tok.encode(fmt.repo_prefix("repo"))
    for p, _, t in files:
        ids += tok.encode(fmt.file_header(p, t) + t)
    ids += engine._fim_ids("c.py", "for i in range(", "):\n    pass\n", 10_000)
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, len(ids):].tolist()
    cut = next((i for i, t in enumerate(out) if t in engine.stop_ids), len(out))
    assert engine.last_ids == out[:cut]
    assert engine.last_stats["generated_tokens"] == cut
    assert text == tok.decode(out[:cut]).rstrip("\ufffd")  # a dangling partial character is not emitted
