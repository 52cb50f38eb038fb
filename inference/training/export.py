"""Writes a trained model as a Hugging Face Qwen3 checkpoint plus the MSA index branch (shared contract names).

Files: config.json (Qwen3ForCausalLM, model_type qwen3, sparse_attention_config, parallel_layout_config, fim_order),
model.safetensors (bf16; sharded with model.safetensors.index.json when over SHARD_BYTES), generation_config.json
and tokenizer.json.  Not its job: loading for serving (inference/checkpoint.py) or training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from inference.training.batches import SEGMENT_CAP
from inference.training.model import ModelConfig, MSAForTraining

SHARD_BYTES = 15 * 1024 * 1024
EOS_IDS = [0, 6]  # <|endoftext|>, <|file_sep|>


def hf_config(cfg: ModelConfig, dtype: str = "bfloat16", fim_order: str = "psm", segment_names: bool = False) -> dict:
    return {
        "fim_order": fim_order,
        "segment_names": segment_names,
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": EOS_IDS[0],
        "pad_token_id": 4,
        "torch_dtype": dtype,
        "dtype": dtype,
        "use_cache": True,
        "sparse_attention_config": {
            "use_sparse_attention": True,
            "sparse_num_index_heads": cfg.num_key_value_heads,
            "sparse_index_dim": cfg.index_dim,
            "sparse_index_rope_dim": cfg.index_dim // 2,
            "sparse_block_size": cfg.block_size,
            "sparse_topk_blocks": cfg.topk_blocks,
            "sparse_score_type": "max",
            "sparse_attention_freq": list(cfg.sparse_layers),
        },
        "parallel_layout_config": {
            "segment_cap_tokens": SEGMENT_CAP,
            "tail_position_offset": SEGMENT_CAP,
            "note": "trained with file segments at positions [p, p+len) after the shared prefix of length p and the "
                    "live tail at p + tail_position_offset (also at p and right after the longest file)",
        },
    }


def save_checkpoint(model: MSAForTraining, out: Path, tokenizer_json: Path | None, dtype=torch.bfloat16,
                    fim_order: str = "psm", segment_names: bool = False) -> list[Path]:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    shards, current, size = [], {}, 0
    for name in sorted(tensors):
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensors[name]
        size += nbytes
    shards.append(current)
    written = []
    if len(shards) == 1:
        written.append(out / "model.safetensors")
        save_file(shards[0], str(written[0]), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out / fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in shard})
            written.append(out / fname)
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    dtype_name = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[dtype]
    (out / "config.json").write_text(json.dumps(hf_config(model.cfg, dtype_name, fim_order, segment_names), indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": EOS_IDS, "pad_token_id": 4}, indent=2) + "\n")
    if tokenizer_json is not None and Path(tokenizer_json).resolve() != (out / "tokenizer.json").resolve():
        shutil.copy(tokenizer_json, out / "tokenizer.json")
    return written


def load_checkpoint(folder: Path) -> MSAForTraining:
    """Reads a checkpoint written by save_checkpoint back into the training model (fp32)."""
    from safetensors.torch import load_file

    conf = json.loads((folder / "config.json").read_text())
    sparse = conf["sparse_attention_config"]
    cfg = ModelConfig(
        vocab_size=conf["vocab_size"], hidden_size=conf["hidden_size"], intermediate_size=conf["intermediate_size"],
        num_hidden_layers=conf["num_hidden_layers"], num_attention_heads=conf["num_attention_heads"],
        num_key_value_heads=conf["num_key_value_heads"], head_dim=conf["head_dim"], rope_theta=conf["rope_theta"],
        rms_norm_eps=conf["rms_norm_eps"], max_position_embeddings=conf["max_position_embeddings"],
        index_dim=sparse["sparse_index_dim"], block_size=sparse["sparse_block_size"],
        topk_blocks=sparse["sparse_topk_blocks"], sparse_layers=list(sparse["sparse_attention_freq"]),
    )
    model = MSAForTraining(cfg)
    state = {}
    for f in sorted(folder.glob("model*.safetensors")):
        state.update(load_file(str(f)))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model
