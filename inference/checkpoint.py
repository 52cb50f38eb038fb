"""Loads a Hugging Face checkpoint directory: config.json, safetensors (single or sharded), weights fingerprint.

Builds the model on the meta device and assigns tensors read from the (memory-mapped) safetensors
files, cast to the requested dtype and device. Does not tokenize and does not run the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib

import torch
from safetensors import safe_open

from inference import config as config_mod
from inference import rope
from inference.model import Transformer

log = logging.getLogger(__name__)
KV_FORMAT = "msa-lsp-kv-1"  # bump when cached KV bytes would change for the same weights


def weight_files(model_dir: pathlib.Path) -> list[pathlib.Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [model_dir / s for s in shards]
    elif (model_dir / "model.safetensors").is_file():
        files = [model_dir / "model.safetensors"]
    else:
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {model_dir}")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"missing weight shards: {missing}")
    return files


def fingerprint(model_dir: pathlib.Path, dtype: torch.dtype) -> str:
    """Identity of (weights, config, tokenizer, KV dtype, KV format): hashes headers, sizes and sampled bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{KV_FORMAT}|{dtype}".encode())
    for name in ("config.json", "tokenizer.json"):
        p = model_dir / name
        h.update(p.read_bytes() if p.is_file() else b"-")
    for f in weight_files(model_dir):
        size = f.stat().st_size
        h.update(f"{f.name}|{size}".encode())
        with f.open("rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            h.update(fh.read(header_len))
            # 64 samples of 4 KiB spread over the tensor bytes: different random weights differ here.
            for i in range(64):
                fh.seek(8 + header_len + (size - 8 - header_len) * i // 64)
                h.update(fh.read(4096))
    return h.hexdigest()


def load_model(model_dir: str | pathlib.Path, *, device: torch.device, dtype: torch.dtype,
               dense_layers: int | None = None) -> Transformer:
    model_dir = pathlib.Path(model_dir)
    cfg = config_mod.load(model_dir, dense_layers=dense_layers)
    with torch.device("meta"):
        model = Transformer(cfg)
    expected = model.state_dict()
    state = {}
    for f in weight_files(model_dir):
        with safe_open(str(f), framework="pt", device="cpu") as st:
            for name in st.keys():
                key = name.removeprefix("model.")
                if key not in expected:
                    if ".index_" in key:  # index branch of a layer we run dense: not needed
                        continue
                    log.debug("ignoring checkpoint tensor %s", name)
                    continue
                t = st.get_tensor(name)
                if tuple(t.shape) != tuple(expected[key].shape):
                    raise ValueError(f"{name}: shape {tuple(t.shape)} != expected {tuple(expected[key].shape)}")
                state[key] = t.to(device=device, dtype=dtype)
    if "lm_head.weight" not in state and (cfg.tie_embeddings or "embed_tokens.weight" in state):
        state["lm_head.weight"] = state["embed_tokens.weight"]
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"checkpoint {model_dir} lacks tensors: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    model.load_state_dict(state, assign=True, strict=True)
    # Non-persistent buffers (RoPE frequencies) were created on meta: rebuild them on the device.
    freq, _ = rope.inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
    model.rope_freq = freq.to(device)
    if cfg.has_index_branch:
        model.index_rope_freq = rope.inv_freq(cfg.index_rope_dim, cfg.rope_theta)[0].to(device)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    return model.eval()
