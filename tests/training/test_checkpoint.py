"""A checkpoint the trainer writes loads through transformers' Qwen3ForCausalLM with the same logits."""

import json

import torch

from inference.training.export import load_checkpoint, save_checkpoint
from inference.training.model import MSAForTraining, causal_visible


def test_saved_checkpoint_matches_transformers_qwen3(tmp_path, tiny_config):
    transformers = __import__("transformers")
    torch.manual_seed(0)
    model = MSAForTraining(tiny_config).eval()
    with torch.no_grad():  # non-trivial norm weights so a misnamed norm would show
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    save_checkpoint(model, tmp_path, None, dtype=torch.float32)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["model_type"] == "qwen3"
    sparse = config["sparse_attention_config"]
    assert sparse["sparse_index_dim"] == 8 and sparse["sparse_index_rope_dim"] == 4
    assert sparse["sparse_attention_freq"] == [0, 1, 1] and sparse["sparse_num_index_heads"] == 2

    hf = transformers.Qwen3ForCausalLM.from_pretrained(str(tmp_path), torch_dtype=torch.float32).eval()
    T = 200
    ids = torch.randint(0, 16000, (1, T))
    with torch.no_grad():
        ours, _ = model(ids, torch.arange(T)[None], causal_visible(T), sparse=False)
        theirs = hf(ids).logits
    assert torch.allclose(ours, theirs, atol=2e-4), (ours - theirs).abs().max()

    again = load_checkpoint(tmp_path).eval()
    with torch.no_grad():
        reloaded, _ = again(ids, torch.arange(T)[None], causal_visible(T), sparse=True)
        ours_sparse, _ = model(ids, torch.arange(T)[None], causal_visible(T), sparse=True)
    assert torch.allclose(reloaded, ours_sparse, atol=1e-5)
    names = set(again.state_dict())
    assert "model.layers.1.self_attn.index_q_proj.weight" in names and "model.layers.0.self_attn.index_q_proj.weight" not in names


def test_bundled_checkpoint_loads_in_transformers_with_the_training_logits():
    transformers = __import__("transformers")
    from pathlib import Path

    bundled = Path(__file__).resolve().parents[2] / "inference" / "bundled"
    config = json.loads((bundled / "config.json").read_text())
    assert config["sparse_attention_config"]["use_sparse_attention"] is True
    assert sum(f.stat().st_size for f in bundled.glob("*.safetensors")) < 30e6
    assert all(f.stat().st_size < 16 * 2**20 for f in bundled.glob("*.safetensors"))
    ours_model = load_checkpoint(bundled).eval()
    hf = transformers.Qwen3ForCausalLM.from_pretrained(str(bundled), torch_dtype=torch.float32).eval()
    ids = torch.randint(7, 16000, (1, 96))
    with torch.no_grad():
        ours, _ = ours_model(ids, torch.arange(96)[None], causal_visible(96), sparse=True)
        theirs = hf(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-3), (ours - theirs).abs().max()
