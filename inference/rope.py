"""Rotary position embeddings: inverse frequencies (default, linear, llama3, yarn) and NeoX rotation.

Matches Hugging Face `transformers` numerics (rotate-half layout, fp32 angles, yarn attention factor).
Does not cache tables: angles are computed from explicit integer positions, which may be anywhere.
"""

from __future__ import annotations

import math

import torch


def inv_freq(dim: int, theta: float, scaling: dict | None = None) -> tuple[torch.Tensor, float]:
    """Returns (inverse frequencies [dim // 2] fp32, attention factor applied to cos/sin)."""
    base = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = scaling or {}
    kind = scaling.get("rope_type", "default")
    if kind == "default":
        return base, 1.0
    factor = float(scaling["factor"])
    if kind == "linear":
        return base / factor, 1.0
    if kind == "llama3":
        old_len = scaling["original_max_position_embeddings"]
        low_wavelen = old_len / scaling["low_freq_factor"]
        high_wavelen = old_len / scaling["high_freq_factor"]
        wavelen = 2 * math.pi / base
        scaled = torch.where(wavelen > low_wavelen, base / factor, base)
        smooth = (old_len / wavelen - scaling["low_freq_factor"]) / (scaling["high_freq_factor"] - scaling["low_freq_factor"])
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        return torch.where(medium, smoothed, scaled), 1.0
    if kind == "yarn":
        return _yarn(dim, theta, factor, scaling)
    raise ValueError(f"unsupported rope type {kind!r}")


def _yarn(dim: int, theta: float, factor: float, scaling: dict) -> tuple[torch.Tensor, float]:
    orig = scaling["original_max_position_embeddings"]

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
    beta_fast = scaling.get("beta_fast") or 32
    beta_slow = scaling.get("beta_slow") or 1

    def correction_dim(rotations):
        return (dim * math.log(orig / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = theta ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1 - ramp
    freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return freq, float(attention_factor)


def cos_sin(positions: torch.Tensor, freq: torch.Tensor, factor: float, dtype: torch.dtype):
    """cos, sin [T, dim] for integer positions [T] (fp32 angles, cast to `dtype` as transformers does)."""
    angles = positions.to(torch.float32)[:, None] * freq.to(positions.device)[None, :]  # (T, dim/2)
    emb = torch.cat((angles, angles), dim=-1)
    return (emb.cos() * factor).to(dtype), (emb.sin() * factor).to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """NeoX rotation of x [T, H, D] on its first cos.shape[-1] dims (the rest pass through)."""
    rot = cos.shape[-1]
    head, tail = x[..., :rot], x[..., rot:]
    half = rot // 2
    rotated_half = torch.cat((-head[..., half:], head[..., :half]), dim=-1)
    out = head * cos[:, None, :] + rotated_half * sin[:, None, :]
    return out if tail.shape[-1] == 0 else torch.cat((out, tail), dim=-1)
