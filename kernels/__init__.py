"""MSA kernels: Triton implementations with a pure-torch reference beside each one.

  reference.py     the semantics and the CPU path (fp32, gathered through the block table)
  ops.py           the switch the engine calls: Triton on CUDA tensors, the reference elsewhere
  index_scores.py  block scores: M3 per-token index keys (max per page) and page summaries (Quest bound, mean)
  topk.py          top-k blocks per GQA group, local block last, ties to the lower id
  sparse_decode.py block-sparse flash-decoding over paged K/V (+ dense decode and chunked prefill)
  dense_prefill.py dense attention of a prompt chunk sharing one block table (query heads stacked in tiles)
  fused_decode.py  the two-launch decode path: summary scores + top-k, attention + split merge; fp8 K/V pages
  score_select.py  top-k from precomputed scores in one launch, resolved into pages (three-launch decode step)
  fp8_kv.py        float8_e4m3fn K/V pages with a scale per (page, KV head): quantise on write
  launch_configs.py launch parameters per GPU generation (Hopper: the H100 tuning), used when a caller passes none
  summaries.py     per-page key min/max/mean, written when pages fill

Imports only torch and triton.
"""
