"""Triton top-k block selection per GQA group: exact fp32 order, ties to the lower block id, local block last.

Each (row, group) program packs every candidate score into one int64 key (order-preserving float bits in the
high word, the complement of the block id in the low word), so each of the k picks is a single max-reduction.
Semantics: `kernels.reference.topk_blocks`. Not here: scoring (`kernels.index_scores`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

PAGE = 128
PAGE_C = tl.constexpr(PAGE)  # the page size inside kernels


@triton.jit
def _topk_kernel(
    s_ptr, seq_ptr, out_ptr,
    H, NB,
    s_sb, s_sh, s_ob, s_oh,
    K: tl.constexpr, K_PAD: tl.constexpr, NB_PAD: tl.constexpr, LOCAL: tl.constexpr, SINK: tl.constexpr,
):
    row = tl.program_id(0) // H
    h = tl.program_id(0) % H
    seq = tl.load(seq_ptr + row)
    L = tl.where(seq > 0, (seq - 1) // PAGE_C, -1)
    slot = tl.arange(0, K_PAD)
    blk = tl.arange(0, NB_PAD)
    first_local = L - LOCAL + 1
    cand = (blk >= SINK) & (blk < first_local) & (blk < NB)
    s = tl.load(s_ptr + row * s_sb + h * s_sh + blk, mask=cand, other=float("-inf"))
    bits = s.to(tl.int32, bitcast=True)
    key = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64)  # monotone in the float value
    packed = (key << 32) | (NB_PAD - 1 - blk).to(tl.int64)  # ties: the lower block id packs larger
    lowest = -9223372036854775807 - 1
    packed = tl.where(cand & (s > float("-inf")), packed, lowest)
    out = tl.where(slot < SINK, slot, -1)
    n_valid = 0
    for i in tl.static_range(K - SINK - LOCAL):
        best = tl.max(packed, axis=0)
        ok = best != lowest
        pick = (NB_PAD - 1 - (best - ((best >> 32) << 32))).to(tl.int32)
        out = tl.where(slot == SINK + i, tl.where(ok, pick, -1), out)
        n_valid += ok.to(tl.int32)
        packed = tl.where(packed == best, lowest, packed)
    for j in tl.static_range(LOCAL):
        out = tl.where(slot == SINK + n_valid + j, first_local + j, out)
    out = tl.where(L + 1 <= K, tl.where(slot <= L, slot, -1), out)
    tl.store(out_ptr + row * s_ob + h * s_oh + slot, out, mask=slot < K)


def topk_blocks(scores, seq_lens, k=16, *, local_blocks=1, sink_blocks=0, num_warps=8):
    """Triton version of `reference.topk_blocks`: scores fp32 [B, Hkv, max_blocks] -> int32 [B, Hkv, k]."""
    B, H, NB = scores.shape
    assert scores.dtype == torch.float32 and scores.stride(2) == 1
    assert k > sink_blocks + local_blocks - 1 and local_blocks >= 1, (k, sink_blocks, local_blocks)
    out = torch.empty(B, H, k, device=scores.device, dtype=torch.int32)
    _topk_kernel[(B * H,)](
        scores, seq_lens.to(torch.int32), out,
        H, NB,
        scores.stride(0), scores.stride(1), out.stride(0), out.stride(1),
        K=k, K_PAD=triton.next_power_of_2(k), NB_PAD=triton.next_power_of_2(max(NB, 16)),
        LOCAL=local_blocks, SINK=sink_blocks,
        num_warps=num_warps,
    )
    return out
