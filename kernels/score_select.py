"""Top-k blocks from precomputed block scores in one launch, resolved into physical pages and visible counts.

The middle launch of a three-launch decode step: block scores from their own launch (`index_scores`: page
summaries or M3 index keys, many small programs that read at bandwidth), then this, then
`fused_decode.sparse_decode_merged(pages=, counts=)`. Programs over chunks of a row keep their chunk's best keys
(bitonic top-k, as in `kernels.topk`); the last to arrive merges the chunks' candidates, lays out the selection and
resolves it through the block table (`fused_decode._merge_and_resolve`), so the two launches of `topk.topk_blocks`
become one and the attention skips the table look-ups. Semantics: `kernels.reference.topk_blocks` plus the pages and
counts of `fused_decode.summary_topk`. Not here: scoring, attention.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.fused_decode import _merge_and_resolve, counters
from kernels.launch_configs import launch_config
from kernels.topk import _pack

PAGE_C = tl.constexpr(128)  # the page size inside kernels


@triton.jit
def _score_select_kernel(
    s_ptr, bt_ptr, seq_ptr, plen_ptr, cand_ptr, cnt_ptr, sel_ptr, phys_ptr, vis_ptr,
    HKV, NB, NCH,
    s_sb, s_sh, s_btb, s_cb, s_ch, s_rb, s_rh,
    CH: tl.constexpr, HAS_PLEN: tl.constexpr, NP: tl.constexpr, NP_PAD: tl.constexpr, NC_PAD: tl.constexpr,
    K: tl.constexpr, K_PAD: tl.constexpr, LOCAL: tl.constexpr, SINK: tl.constexpr, TRIGGER: tl.constexpr,
):
    """Program (row*HKV + group, chunk of CH blocks)."""
    pid = tl.program_id(0)
    row = pid // HKV
    h = pid % HKV
    c = tl.program_id(1)
    seq = tl.load(seq_ptr + row)
    L = tl.where(seq > 0, (seq - 1) // PAGE_C, -1)
    blk = c * CH + tl.arange(0, CH)
    cand_ok = (blk >= SINK) & (blk < L - LOCAL + 1) & (blk < NB)
    s = tl.load(s_ptr + row * s_sb + h * s_sh + blk, mask=cand_ok, other=float("-inf"))
    _merge_and_resolve(tl.topk(_pack(s, blk), NP_PAD), cand_ptr, cnt_ptr, bt_ptr, plen_ptr, sel_ptr, phys_ptr, vis_ptr,
                       pid, row, h, c, seq, L, NCH, s_btb, s_cb, s_ch, s_rb, s_rh,
                       HAS_PLEN, NP, NP_PAD, NC_PAD, K, K_PAD, LOCAL, SINK, TRIGGER)


def score_select(scores, block_table, seq_lens, k=16, *, page_lens=None, local_blocks=1, sink_blocks=0, chunk=None,
                 num_warps=None, trigger=False):
    """`reference.topk_blocks(scores, seq_lens, k)` in one launch, with each pick's page and visible tokens.

    scores fp32 [B, Hkv, max_blocks] (from `index_scores`), block_table [B, max_blocks], page_lens as for the scores.
    Returns (selected, pages, counts), int32 [B, Hkv, k] each, as `fused_decode.summary_topk` gives them.
    chunk / num_warps left None come from `kernels.launch_configs` ("topk"); trigger as in `summary_topk`.
    """
    B, H, NB = scores.shape
    assert scores.dtype == torch.float32 and scores.stride(2) == 1 and block_table.stride(1) == 1
    assert block_table.shape[1] >= NB, "the block table must cover every scored block"
    assert k > sink_blocks + local_blocks - 1 and local_blocks >= 1, (k, sink_blocks, local_blocks)
    cfg = launch_config("topk", scores.device, chunk=chunk, num_warps=num_warps)
    chunk = cfg["chunk"]
    assert chunk & (chunk - 1) == 0, f"chunk must be a power of two, not {chunk}"
    n_pick = k - sink_blocks - local_blocks
    np_pad = triton.next_power_of_2(max(n_pick, 1))
    chunk = max(np_pad, min(chunk, triton.next_power_of_2(max(NB, 16))))
    n_chunks = triton.cdiv(NB, chunk)
    dev = scores.device
    cand = torch.empty(B, H, n_chunks * np_pad, device=dev, dtype=torch.int64)
    sel, pages, counts = (torch.empty(B, H, k, device=dev, dtype=torch.int32) for _ in range(3))
    seq = seq_lens.to(torch.int32)
    _score_select_kernel[(B * H, n_chunks)](
        scores, block_table, seq, page_lens if page_lens is not None else seq, cand, counters(dev, B * H, "select"),
        sel, pages, counts,
        H, NB, n_chunks,
        scores.stride(0), scores.stride(1), block_table.stride(0), cand.stride(0), cand.stride(1), sel.stride(0), sel.stride(1),
        CH=chunk, HAS_PLEN=page_lens is not None, NP=n_pick, NP_PAD=np_pad, NC_PAD=triton.next_power_of_2(n_chunks),
        K=k, K_PAD=triton.next_power_of_2(k), LOCAL=local_blocks, SINK=sink_blocks, TRIGGER=trigger, num_warps=cfg["num_warps"],
    )
    return sel, pages, counts
