"""MSA kernels: Triton implementations with a pure-torch reference beside each one.

  reference.py     the semantics and the CPU path (fp32, gathered through the block table)
  ops.py           the switch the engine calls: Triton on CUDA tensors, the reference elsewhere
  index_scores.py  block scores: M3 per-token index keys (max per page) and page summaries (Quest bound, mean)
  topk.py          top-k blocks per GQA group, local block last, ties to the lower id
  sparse_decode.py block-sparse flash-decoding over paged K/V (+ dense decode and chunked prefill)
  summaries.py     per-page key min/max/mean, written when pages fill

Imports only torch and triton.
"""
