"""Model configuration read from a Hugging Face `config.json` (Llama, Qwen2, Qwen3 families).

Turns the checkpoint's JSON into one frozen dataclass the model, cache and engine share; derives
head_dim, RoPE parameters, dense/sparse layers and the MSA index-branch shape. Does not load weights.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field

FAMILIES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "msa": "qwen3"}


@dataclass(frozen=True)
class ModelConfig:
    family: str  # "llama" | "qwen2" | "qwen3"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    rms_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict = field(default_factory=dict)  # {"rope_type": "linear"|"llama3"|"yarn", ...}
    max_position: int = 2048
    tie_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    # MSA index branch (present only in checkpoints trained with it)
    index_dim: int = 0
    index_rope_dim: int = 0
    sparse_layers: tuple[bool, ...] = ()  # per layer: True = MSA-sparse attention, False = dense
    topk_blocks: int = 16
    block_size: int = 128
    # parallel layout the checkpoint was trained with (0 = not given): segment cap and tail offset after the prefix
    segment_cap: int = 0
    tail_offset: int = 0

    @property
    def has_index_branch(self) -> bool:
        return self.index_dim > 0

    @property
    def window(self) -> int:
        """Trained context length (before any RoPE scaling)."""
        orig = self.rope_scaling.get("original_max_position_embeddings")
        return int(orig or self.max_position)


def _rope(raw: dict) -> tuple[float, dict]:
    params = dict(raw.get("rope_parameters") or {})
    scaling = dict(raw.get("rope_scaling") or {})
    theta = float(params.get("rope_theta") or raw.get("rope_theta") or 10000.0)
    merged = {**scaling, **params}
    kind = merged.get("rope_type") or merged.get("type") or "default"
    if kind not in ("default", "linear", "llama3", "yarn"):
        raise ValueError(f"rope type {kind!r} is not supported (default, linear, llama3, yarn are)")
    if kind == "default":
        return theta, {}
    merged["rope_type"] = kind
    merged.pop("rope_theta", None)
    merged.pop("type", None)
    if kind in ("llama3", "yarn"):
        merged.setdefault("original_max_position_embeddings", raw.get("max_position_embeddings", 2048))
    return theta, merged


def from_dict(raw: dict, *, dense_layers: int | None = None) -> ModelConfig:
    """Build a ModelConfig from config.json contents; `dense_layers` overrides how many leading layers stay dense."""
    model_type = raw.get("model_type", "")
    if model_type not in FAMILIES:
        raise ValueError(f"model_type {model_type!r} is not supported; expected one of {sorted(FAMILIES)}")
    family = FAMILIES[model_type]
    heads = int(raw["num_attention_heads"])
    hidden = int(raw["hidden_size"])
    layers = int(raw["num_hidden_layers"])
    theta, scaling = _rope(raw)
    sparse_cfg = raw.get("sparse_attention_config") or {}
    index_dim = int(sparse_cfg.get("sparse_index_dim", 0)) if sparse_cfg.get("use_sparse_attention") else 0
    freq = sparse_cfg.get("sparse_attention_freq") if index_dim else None
    if dense_layers is not None:
        sparse = tuple(i >= dense_layers for i in range(layers))
    elif freq is not None:
        if len(freq) != layers:
            raise ValueError(f"sparse_attention_freq has {len(freq)} entries for {layers} layers")
        sparse = tuple(bool(f) for f in freq)
    else:
        # Training-free selection: keep the first two layers dense (Quest's choice).
        sparse = tuple(i >= min(2, layers - 1) for i in range(layers))
    return ModelConfig(
        family=family,
        vocab_size=int(raw["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(raw["intermediate_size"]),
        num_layers=layers,
        num_q_heads=heads,
        num_kv_heads=int(raw.get("num_key_value_heads") or heads),
        head_dim=int(raw.get("head_dim") or hidden // heads),
        rms_eps=float(raw.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position=int(raw.get("max_position_embeddings", 2048)),
        tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
        qkv_bias=family == "qwen2" or bool(raw.get("attention_bias", False)),
        o_bias=family != "qwen2" and bool(raw.get("attention_bias", False)),
        mlp_bias=bool(raw.get("mlp_bias", False)),
        qk_norm=family == "qwen3",
        index_dim=index_dim,
        index_rope_dim=int(sparse_cfg.get("sparse_index_rope_dim", index_dim // 2)) if index_dim else 0,
        sparse_layers=sparse,
        topk_blocks=int(sparse_cfg.get("sparse_topk_blocks", 16)),
        block_size=int(sparse_cfg.get("sparse_block_size", 128)),
        segment_cap=int((raw.get("parallel_layout_config") or {}).get("segment_cap_tokens", 0)),
        tail_offset=int((raw.get("parallel_layout_config") or {}).get("tail_position_offset", 0)),
    )


def load(model_dir: str | pathlib.Path, *, dense_layers: int | None = None) -> ModelConfig:
    path = pathlib.Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {model_dir}")
    raw = json.loads(path.read_text())
    if "text_config" in raw and "model_type" not in raw.get("text_config", {}):
        raise ValueError("multimodal configs are not supported")
    cfg = from_dict(raw, dense_layers=dense_layers)
    if cfg.block_size != 128:
        raise ValueError(f"sparse_block_size must be 128 (the KV page size), got {cfg.block_size}")
    return cfg
