"""Zeroed int32 arrival counters for kernels whose last-arriving program finishes a reduction.

A kernel takes a ticket with an atomic add; the program that draws the last ticket merges the partial results
and stores 0 back, so the counters are zero again after every launch and the kernels replay in CUDA graphs.
One buffer per device, allocated on first use (do that first call outside graph capture, as the Triton compile
needs anyway); kernels on one device that use it must not run concurrently on several streams.
"""

from __future__ import annotations

import torch

_buffers: dict[torch.device, torch.Tensor] = {}


def arrival_counters(device: torch.device, n: int) -> torch.Tensor:
    """At least n zeroed int32 counters on device (shared by every call; see the module docstring)."""
    buf = _buffers.get(device)
    if buf is None or buf.numel() < n:
        if torch.cuda.is_available() and device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError("arrival counters must be allocated before CUDA graph capture: run the op once eagerly first")
        buf = torch.zeros(max(n, 4096), dtype=torch.int32, device=device)
        _buffers[device] = buf
    return buf[:n]
