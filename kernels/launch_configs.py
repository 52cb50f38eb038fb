"""Launch parameters of the Triton kernels by GPU generation: what each kernel uses when its caller passes none.

Hopper (sm_90: H100, H200) takes the values `benchmarks/bench_msa_decode.py --tune` chose on an H100 (1M tokens,
Hq/Hkv/d = 28/4/128, bf16, 2026-11-26); every other device (other GPUs, the interpreter on CPU tensors) takes the
portable values, without programmatic dependent launch. "trigger" / "pdl" are the setting of the two-launch pair
(`fused_decode.summary_sparse_decode` applies it to both launches); a lone `summary_topk` or `sparse_decode_merged`
launches plainly unless its caller asks. Not here: the kernels, the tuning sweep (the benchmark's `--tune`).
"""

from __future__ import annotations

import torch

PORTABLE = {
    "index": {"pages_per_program": 8, "num_warps": 4, "num_stages": 2},
    "summary": {"block_pages": 32, "num_warps": 4},
    "topk": {"chunk": 512, "num_warps": 4, "merge_warps": 4},
    "decode": {"block_n": 64, "num_warps": 4, "num_stages": 2},
    "fused_topk": {"block_pages": 128, "dim_chunk": 32, "num_warps": 8, "trigger": False},
    "fused_decode": {"block_n": 64, "units_per_split": 1, "num_warps": 8, "num_stages": 1, "pdl": False},
}
HOPPER = {
    "index": {"pages_per_program": 8, "num_warps": 4, "num_stages": 4},
    "summary": {"block_pages": 32, "num_warps": 4},
    "topk": {"chunk": 512, "num_warps": 4, "merge_warps": 4},
    "decode": {"block_n": 128, "num_warps": 4, "num_stages": 2},
    "fused_topk": {"block_pages": 128, "dim_chunk": 32, "num_warps": 8, "trigger": True},
    "fused_decode": {"block_n": 128, "units_per_split": 1, "num_warps": 8, "num_stages": 1, "pdl": True},
}
TABLES = {"portable": PORTABLE, "hopper": HOPPER}
_generation_of: dict[int, str] = {}


def generation(device) -> str:
    """"hopper" for a CUDA device of compute capability 9.x, "portable" for anything else."""
    device = torch.device(device)
    if device.type != "cuda":
        return "portable"
    index = device.index if device.index is not None else torch.cuda.current_device()
    name = _generation_of.get(index)
    if name is None:
        name = "hopper" if torch.cuda.get_device_capability(index)[0] == 9 else "portable"
        _generation_of[index] = name
    return name


def table(device) -> dict[str, dict]:
    """Every kernel's launch parameters on `device` (a copy)."""
    return {kernel: dict(values) for kernel, values in TABLES[generation(device)].items()}


def launch_config(kernel: str, device, **given) -> dict:
    """`kernel`'s launch parameters on `device`, each given value that is not None taking precedence."""
    values = dict(TABLES[generation(device)][kernel])
    values.update({name: value for name, value in given.items() if value is not None})
    return values
