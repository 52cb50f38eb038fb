"""Triton top-k block selection per GQA group: exact fp32 order, ties to the lower block id, local block last.

Every candidate score becomes one int64 key (order-preserving float bits in the high word, the complement of
the block id in the low word), so keys are distinct and ties go to the lower id. Programs over chunks of a
row each keep their chunk's best keys with Triton's bitonic top-k (no serial rounds); one program per (row,
group) takes the best of those candidates and lays out sinks, history and local blocks (a row of one chunk
does it all in one launch). Semantics: `kernels.reference.topk_blocks`. Not here: scoring.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.launch_configs import launch_config

PAGE = 128
PAGE_C = tl.constexpr(PAGE)  # the page size inside kernels


@triton.jit
def _pack(s, blk):
    """Order-preserving int64 key of (score, -block id); -inf and masked scores map to int64 min."""
    bits = s.to(tl.int32, bitcast=True)
    key = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64)
    packed = (key << 32) | (2147483647 - blk).to(tl.int64)
    return tl.where(s > float("-inf"), packed, -9223372036854775807 - 1)


@triton.jit
def _layout(top, L, K: tl.constexpr, K_PAD: tl.constexpr, NP: tl.constexpr, NP_PAD: tl.constexpr,
            LOCAL: tl.constexpr, SINK: tl.constexpr):
    """Output row [K_PAD] from the best keys `top` [NP_PAD] (descending): sinks, valid picks, locals, -1."""
    kslot = tl.arange(0, K_PAD)
    j = tl.arange(0, NP_PAD)
    found = (top != -9223372036854775807 - 1) & (j < NP)
    pick = tl.where(found, (2147483647 - (top - ((top >> 32) << 32))).to(tl.int32), -1)
    n_valid = tl.sum(found.to(tl.int32), axis=0)
    hit = (kslot[:, None] - SINK) == j[None, :]
    out = tl.sum(tl.where(hit, pick[None, :], 0), axis=1)
    in_hist = (kslot >= SINK) & (kslot < SINK + NP)
    out = tl.where(in_hist, out, -1)
    out = tl.where(kslot < SINK, kslot, out)
    loc = kslot - SINK - n_valid
    out = tl.where((loc >= 0) & (loc < LOCAL), L - LOCAL + 1 + loc, out)
    return tl.where(L + 1 <= K, tl.where(kslot <= L, kslot, -1), out)


@triton.jit
def _chunk_topk_kernel(
    s_ptr, seq_ptr, cand_ptr, out_ptr,
    H, NB,
    s_sb, s_sh, s_cb, s_ch, s_cc, s_ob, s_oh,
    CH: tl.constexpr, NP: tl.constexpr, NP_PAD: tl.constexpr,
    K: tl.constexpr, K_PAD: tl.constexpr, LOCAL: tl.constexpr, SINK: tl.constexpr, SINGLE: tl.constexpr,
):
    """Program (row*H + group, chunk): the chunk's best NP_PAD keys by bitonic top-k; with a single chunk
    the final row directly."""
    row = tl.program_id(0) // H
    h = tl.program_id(0) % H
    c = tl.program_id(1)
    seq = tl.load(seq_ptr + row)
    L = tl.where(seq > 0, (seq - 1) // PAGE_C, -1)
    blk = c * CH + tl.arange(0, CH)
    ok = (blk >= SINK) & (blk < L - LOCAL + 1) & (blk < NB)
    s = tl.load(s_ptr + row * s_sb + h * s_sh + blk, mask=ok, other=float("-inf"))
    top = tl.topk(_pack(s, blk), NP_PAD)
    if SINGLE:
        out = _layout(top, L, K, K_PAD, NP, NP_PAD, LOCAL, SINK)
        kslot = tl.arange(0, K_PAD)
        tl.store(out_ptr + row * s_ob + h * s_oh + kslot, out, mask=kslot < K)
    else:
        tl.store(cand_ptr + row * s_cb + h * s_ch + c * s_cc + tl.arange(0, NP_PAD), top)


@triton.jit
def _merge_topk_kernel(
    cand_ptr, seq_ptr, out_ptr,
    H, NCH,
    s_cb, s_ch, s_cc, s_ob, s_oh,
    NP: tl.constexpr, NP_PAD: tl.constexpr, NC_PAD: tl.constexpr,
    K: tl.constexpr, K_PAD: tl.constexpr, LOCAL: tl.constexpr, SINK: tl.constexpr,
):
    """Program (row*H + group): best NP of all chunks' candidates, laid out as the final row."""
    row = tl.program_id(0) // H
    h = tl.program_id(0) % H
    seq = tl.load(seq_ptr + row)
    L = tl.where(seq > 0, (seq - 1) // PAGE_C, -1)
    idx = tl.arange(0, NC_PAD * NP_PAD)
    c = idx // NP_PAD
    cands = tl.load(cand_ptr + row * s_cb + h * s_ch + c * s_cc + idx % NP_PAD, mask=c < NCH, other=-9223372036854775807 - 1)
    out = _layout(tl.topk(cands, NP_PAD), L, K, K_PAD, NP, NP_PAD, LOCAL, SINK)
    kslot = tl.arange(0, K_PAD)
    tl.store(out_ptr + row * s_ob + h * s_oh + kslot, out, mask=kslot < K)


def topk_blocks(scores, seq_lens, k=16, *, local_blocks=1, sink_blocks=0, chunk=None, num_warps=None, merge_warps=None):
    """Triton version of `reference.topk_blocks`: scores fp32 [B, Hkv, max_blocks] -> int32 [B, Hkv, k].
    Launch parameters left None come from `kernels.launch_configs` ("topk")."""
    cfg = launch_config("topk", scores.device, chunk=chunk, num_warps=num_warps, merge_warps=merge_warps)
    chunk = cfg["chunk"]
    B, H, NB = scores.shape
    assert scores.dtype == torch.float32 and scores.stride(2) == 1
    assert k > sink_blocks + local_blocks - 1 and local_blocks >= 1, (k, sink_blocks, local_blocks)
    assert chunk & (chunk - 1) == 0, f"chunk must be a power of two, not {chunk}"
    n_pick = k - sink_blocks - local_blocks
    np_pad = triton.next_power_of_2(max(n_pick, 1))
    chunk = max(np_pad, min(chunk, triton.next_power_of_2(max(NB, 16))))
    n_chunks = triton.cdiv(NB, chunk)
    seq = seq_lens.to(torch.int32)
    out = torch.empty(B, H, k, device=scores.device, dtype=torch.int32)
    cand = torch.empty(B, H, n_chunks, np_pad, device=scores.device, dtype=torch.int64) if n_chunks > 1 else out
    meta = dict(NP=n_pick, NP_PAD=np_pad, K=k, K_PAD=triton.next_power_of_2(k), LOCAL=local_blocks, SINK=sink_blocks)
    _chunk_topk_kernel[(B * H, n_chunks)](
        scores, seq, cand, out,
        H, NB,
        scores.stride(0), scores.stride(1), cand.stride(0), cand.stride(1), cand.stride(2) if n_chunks > 1 else 0,
        out.stride(0), out.stride(1),
        CH=chunk, SINGLE=n_chunks == 1, num_warps=cfg["num_warps"], **meta,
    )
    if n_chunks > 1:
        _merge_topk_kernel[(B * H,)](
            cand, seq, out,
            H, n_chunks,
            cand.stride(0), cand.stride(1), cand.stride(2), out.stride(0), out.stride(1),
            NC_PAD=triton.next_power_of_2(n_chunks), num_warps=cfg["merge_warps"], **meta,
        )
    return out
