"""Tiny random checkpoints saved with the pinned `transformers`, and a byte-level BPE tokenizer trained on the fly."""

from __future__ import annotations

import json
import pathlib

import pytest

SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
            "<|repo_name|>", "<|file_sep|>"]
CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "import os\nimport sys\n\nclass Greeter:\n    def hello(self, name):\n        print('hello', name)\n",
    "for i in range(10):\n    total = total + i * 2\n",
    "from util import helper\nvalue = helper(3)\n",
]


def train_tokenizer(path: pathlib.Path, vocab_size: int = 300) -> pathlib.Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    tok.save(str(path / "tokenizer.json"))
    return path / "tokenizer.json"


def build_model(path: pathlib.Path, family: str, *, layers: int = 2, seed: int = 0, shard: bool = False,
                tied: bool = False, rope: dict | None = None, max_position: int = 4096, extra: dict | None = None):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
               "qwen3": (Qwen3Config, Qwen3ForCausalLM)}
    config_cls, model_cls = classes[family]
    kwargs = dict(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=300, intermediate_size=128, max_position_embeddings=max_position,
                  tie_word_embeddings=tied, rope_parameters=rope or {"rope_type": "default", "rope_theta": 10000.0})
    if family == "qwen3":
        kwargs["head_dim"] = 24
    torch.manual_seed(seed)
    model = model_cls(config_cls(**kwargs)).eval()
    with torch.no_grad():  # random norms so that a missing or misplaced norm changes the logits
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), max_shard_size="40KB" if shard else "5GB")
    if extra:
        cfg = json.loads((path / "config.json").read_text())
        cfg.update(extra)
        (path / "config.json").write_text(json.dumps(cfg))
    train_tokenizer(path)
    return model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """family -> directory of a saved random model (one per family, built once per session)."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for family in ("llama", "qwen2", "qwen3"):
        build_model(root / family, family)
        out[family] = root / family
    return out


def add_index_branch(path: pathlib.Path, *, index_dim: int = 16, dense_first: int = 1, seed: int = 0) -> None:
    """Give a saved model random MSA index-branch weights and a sparse_attention_config (contract names)."""
    import torch
    from safetensors.torch import load_file, save_file

    cfg = json.loads((path / "config.json").read_text())
    layers, hkv, hidden = cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["hidden_size"]
    freq = [0 if i < dense_first else 1 for i in range(layers)]
    cfg["sparse_attention_config"] = {"use_sparse_attention": True, "sparse_num_index_heads": hkv,
                                      "sparse_index_dim": index_dim, "sparse_index_rope_dim": index_dim // 2,
                                      "sparse_block_size": 128, "sparse_topk_blocks": 16, "sparse_attention_freq": freq}
    (path / "config.json").write_text(json.dumps(cfg))
    weights = load_file(str(path / "model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    for i in range(layers):
        if not freq[i]:
            continue
        pre = f"model.layers.{i}.self_attn."
        weights[pre + "index_q_proj.weight"] = torch.randn(hkv * index_dim, hidden, generator=g) * 0.1
        weights[pre + "index_k_proj.weight"] = torch.randn(index_dim, hidden, generator=g) * 0.1
        weights[pre + "index_q_norm.weight"] = torch.randn(index_dim, generator=g) * 0.1
        weights[pre + "index_k_norm.weight"] = torch.randn(index_dim, generator=g) * 0.1
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})


def repo_files(n: int = 6, lines: int = 8) -> list[tuple[str, str, str]]:
    """A small synthetic repository: (path, content_hash, text)."""
    out = []
    for i in range(n):
        body = "".join(f"def f{i}_{j}(x):\n    return x * {j} + {i}\n" for j in range(lines + 3 * i))
        out.append((f"pkg/mod{i}.py", f"h{i}", f"import os\n\n{body}"))
    return out


def random_page_pool(index_dim: int, lengths: tuple[int, ...], seed: int):
    """A float32 CPU page pool of a 2-layer model (6 query / 2 KV heads, head_dim 24; layer 1 sparse) holding one
    segment of random K/V (and index keys when index_dim, page summaries otherwise) per length; returns (pool,
    the segments' pages in reverse, so logical order differs from physical order)."""
    import torch

    from inference.config import ModelConfig
    from inference.kv_cache import PagePool

    cfg = ModelConfig(family="qwen3", vocab_size=10, hidden_size=32, intermediate_size=32, num_layers=2,
                      num_q_heads=6, num_kv_heads=2, head_dim=24, index_dim=index_dim, index_rope_dim=index_dim // 2,
                      sparse_layers=(False, True))
    pool = PagePool(cfg, torch.device("cpu"), torch.float32, summaries=index_dim == 0, initial_pages=4)
    g = torch.Generator().manual_seed(seed)
    pages = []
    for n in lengths:
        seg = pool.alloc((n + 127) // 128)
        for layer in range(2):
            pool.write(layer, seg, torch.randn(n, 2, 24, generator=g), torch.randn(n, 2, 24, generator=g),
                       torch.randn(n, index_dim, generator=g) if index_dim else None)
        pool.seal(seg, n)
        pages += seg
    return pool, pages[::-1]


@pytest.fixture(scope="session")
def msa_model(tmp_path_factory):
    """A qwen3-shaped random model with an MSA index branch on layers 1.. (layer 0 dense)."""
    path = tmp_path_factory.mktemp("msa") / "qwen3-msa"
    build_model(path, "qwen3", layers=3, seed=3)
    add_index_branch(path)
    return path
