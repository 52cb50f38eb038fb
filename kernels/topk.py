"""Triton top-k block selection per GQA group: exact fp32 order, ties to the lower block id, local block last.

Every candidate score becomes one int64 key (order-preserving float bits in the high word, the complement of
the block id in the low word), so each pick is a single max-reduction and ties go to the lower id. One
launch: programs over chunks of a row each keep their chunk's best (k - sinks - locals) keys; the program that
finishes last for its (row, group) (an atomic arrival counter) merges those candidates and lays out sinks,
history and local blocks. Semantics: `kernels.reference.topk_blocks`. Not here: scoring.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.counters import arrival_counters

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
def _topk_kernel(
    s_ptr, seq_ptr, cand_ptr, cnt_ptr, out_ptr,
    H, NB, NCH,
    s_sb, s_sh, s_cb, s_ch, s_cc, s_ob, s_oh,
    CH: tl.constexpr, NP: tl.constexpr, NP_PAD: tl.constexpr, NC_PAD: tl.constexpr,
    K: tl.constexpr, K_PAD: tl.constexpr, LOCAL: tl.constexpr, SINK: tl.constexpr,
):
    """Program (row*H + group, chunk): the chunk's best NP keys; the last chunk to finish merges them all."""
    row = tl.program_id(0) // H
    h = tl.program_id(0) % H
    c = tl.program_id(1)
    seq = tl.load(seq_ptr + row)
    L = tl.where(seq > 0, (seq - 1) // PAGE_C, -1)
    blk = c * CH + tl.arange(0, CH)
    ok = (blk >= SINK) & (blk < L - LOCAL + 1) & (blk < NB)
    s = tl.load(s_ptr + row * s_sb + h * s_sh + blk, mask=ok, other=float("-inf"))
    packed = _pack(s, blk)
    slot = tl.arange(0, NP_PAD)
    res = tl.full([NP_PAD], -9223372036854775807 - 1, tl.int64)
    for i in tl.static_range(NP):
        best = tl.max(packed, axis=0)
        res = tl.where(slot == i, best, res)
        packed = tl.where(packed == best, -9223372036854775807 - 1, packed)
    cand_row = cand_ptr + row * s_cb + h * s_ch
    tl.store(cand_row + c * s_cc + slot, res)
    tl.debug_barrier()
    ticket = tl.atomic_add(cnt_ptr + tl.program_id(0), 1, sem="acq_rel", scope="gpu")
    if ticket == NCH - 1:
        idx = tl.arange(0, NC_PAD * NP_PAD)
        cc = idx // NP_PAD
        cands = tl.load(cand_row + cc * s_cc + idx % NP_PAD, mask=cc < NCH, other=-9223372036854775807 - 1, cache_modifier=".cg")
        kslot = tl.arange(0, K_PAD)
        out = tl.where(kslot < SINK, kslot, -1)
        n_valid = 0
        for i in tl.static_range(NP):
            top = tl.max(cands, axis=0)
            found = top != -9223372036854775807 - 1
            pick = (2147483647 - (top - ((top >> 32) << 32))).to(tl.int32)
            out = tl.where(kslot == SINK + i, tl.where(found, pick, -1), out)
            n_valid += found.to(tl.int32)
            cands = tl.where(cands == top, -9223372036854775807 - 1, cands)
        for j in tl.static_range(LOCAL):
            out = tl.where(kslot == SINK + n_valid + j, L - LOCAL + 1 + j, out)
        out = tl.where(L + 1 <= K, tl.where(kslot <= L, kslot, -1), out)
        tl.store(out_ptr + row * s_ob + h * s_oh + kslot, out, mask=kslot < K)
        tl.store(cnt_ptr + tl.program_id(0), 0)


def topk_blocks(scores, seq_lens, k=16, *, local_blocks=1, sink_blocks=0, chunk=512, num_warps=4):
    """Triton version of `reference.topk_blocks`: scores fp32 [B, Hkv, max_blocks] -> int32 [B, Hkv, k]."""
    B, H, NB = scores.shape
    assert scores.dtype == torch.float32 and scores.stride(2) == 1
    assert k > sink_blocks + local_blocks - 1 and local_blocks >= 1, (k, sink_blocks, local_blocks)
    n_pick = k - sink_blocks - local_blocks
    np_pad = triton.next_power_of_2(max(n_pick, 1))
    chunk = min(chunk, triton.next_power_of_2(max(NB, 16)))
    n_chunks = triton.cdiv(NB, chunk)
    cand = torch.empty(B, H, n_chunks, np_pad, device=scores.device, dtype=torch.int64)
    out = torch.empty(B, H, k, device=scores.device, dtype=torch.int32)
    _topk_kernel[(B * H, n_chunks)](
        scores, seq_lens.to(torch.int32), cand, arrival_counters(scores.device, B * H), out,
        H, NB, n_chunks,
        scores.stride(0), scores.stride(1), cand.stride(0), cand.stride(1), cand.stride(2), out.stride(0), out.stride(1),
        CH=chunk, NP=n_pick, NP_PAD=np_pad, NC_PAD=triton.next_power_of_2(n_chunks),
        K=k, K_PAD=triton.next_power_of_2(k), LOCAL=local_blocks, SINK=sink_blocks,
        num_warps=num_warps,
    )
    return out
