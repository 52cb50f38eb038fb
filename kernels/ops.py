"""The one switch the engine calls: each MSA op runs as a Triton kernel on CUDA tensors and as the
pure-torch reference on CPU tensors. Shapes and semantics are those of `kernels.reference`.

Override with `use_backend("triton" | "reference" | "auto")` (a context manager, for tests and benchmarks) or the
environment variable MSA_KERNELS ("triton" forces Triton even on CPU tensors, which needs TRITON_INTERPRET=1).
On Triton, sparse attention runs the one-launch kernel of `kernels.fused_decode` (splits merged in-kernel; it
also reads fp8 pages) and `summary_sparse_decode` scores, selects and attends in two launches; MSA_FUSED=0
switches back to the separate kernels (bf16/fp16 only) for comparison. Not here: the kernels themselves.
"""

from __future__ import annotations

import os

from kernels import reference

_BACKENDS = ("auto", "triton", "reference")
_backend = os.environ.get("MSA_KERNELS", "auto")
_fused = os.environ.get("MSA_FUSED", "1") != "0"
if _backend not in _BACKENDS:
    raise ValueError(f"MSA_KERNELS must be one of {_BACKENDS}, not {_backend!r}")


class use_backend:
    """Run the enclosed calls on one backend ("auto" = Triton on CUDA tensors, reference elsewhere)."""

    def __init__(self, name: str):
        if name not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, not {name!r}")
        self.name = name

    def __enter__(self):
        global _backend
        self.old, _backend = _backend, self.name
        return self

    def __exit__(self, *exc):
        global _backend
        _backend = self.old
        return False


def _triton(tensor) -> bool:
    if _backend == "reference":
        return False
    if _backend == "triton":
        if not tensor.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError("the Triton backend on CPU tensors needs TRITON_INTERPRET=1 set before triton is imported")
        return True
    return tensor.is_cuda


def index_block_scores(q_idx, index_k_cache, block_table, seq_lens, page_lens=None):
    if _triton(q_idx):
        from kernels import index_scores

        return index_scores.index_block_scores(q_idx, index_k_cache, block_table, seq_lens, page_lens)
    return reference.index_block_scores(q_idx, index_k_cache, block_table, seq_lens, page_lens)


def summary_block_scores(q, kmin, kmax, block_table, seq_lens, *, kmean=None, mode="minmax", page_lens=None):
    if _triton(q):
        from kernels import index_scores

        return index_scores.summary_block_scores(q, kmin, kmax, block_table, seq_lens, kmean=kmean, mode=mode, page_lens=page_lens)
    return reference.summary_block_scores(q, kmin, kmax, block_table, seq_lens, kmean=kmean, mode=mode, page_lens=page_lens)


def topk_blocks(scores, seq_lens, k=16, *, local_blocks=1, sink_blocks=0):
    if _triton(scores):
        from kernels import topk

        return topk.topk_blocks(scores, seq_lens, k, local_blocks=local_blocks, sink_blocks=sink_blocks)
    return reference.topk_blocks(scores, seq_lens, k, local_blocks=local_blocks, sink_blocks=sink_blocks)


def sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, *, scale=None, page_lens=None, return_lse=False,
                  k_scale=None, v_scale=None):
    if _triton(q):
        if _fused or k_scale is not None:
            from kernels import fused_decode

            return fused_decode.sparse_decode_merged(q, k_cache, v_cache, block_table, seq_lens, selected, scale=scale, page_lens=page_lens,
                                                     return_lse=return_lse, k_scale=k_scale, v_scale=v_scale)
        from kernels import sparse_decode as kernel

        return kernel.sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, scale=scale, page_lens=page_lens, return_lse=return_lse)
    return reference.sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, scale=scale, page_lens=page_lens,
                                   return_lse=return_lse, k_scale=k_scale, v_scale=v_scale)


def summary_sparse_decode(q, kmin, kmax, k_cache, v_cache, block_table, seq_lens, k=16, *, kmean=None, mode="minmax",
                          scale=None, page_lens=None, return_lse=False, k_scale=None, v_scale=None):
    """One decode step of a sparse layer from page summaries: (out[, lse], selected) as summary_block_scores ->
    topk_blocks(k) -> sparse_decode would give (two launches on Triton)."""
    if _triton(q) and _fused:
        from kernels import fused_decode

        return fused_decode.summary_sparse_decode(q, kmin, kmax, k_cache, v_cache, block_table, seq_lens, k, kmean=kmean, mode=mode,
                                                  scale=scale, page_lens=page_lens, return_lse=return_lse, k_scale=k_scale, v_scale=v_scale)
    scores = summary_block_scores(q, kmin, kmax, block_table, seq_lens, kmean=kmean, mode=mode, page_lens=page_lens)
    selected = topk_blocks(scores, seq_lens, k)
    res = sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, scale=scale, page_lens=page_lens,
                        return_lse=return_lse, k_scale=k_scale, v_scale=v_scale)
    return (*res, selected) if return_lse else (res, selected)


def dense_decode(q, k_cache, v_cache, block_table, seq_lens, *, scale=None, page_lens=None, return_lse=False):
    if _triton(q):
        from kernels import sparse_decode as kernel

        return kernel.dense_decode(q, k_cache, v_cache, block_table, seq_lens, scale=scale, page_lens=page_lens, return_lse=return_lse)
    return reference.dense_decode(q, k_cache, v_cache, block_table, seq_lens, scale=scale, page_lens=page_lens, return_lse=return_lse)


def sparse_prefill(q, k_cache, v_cache, block_table, positions, selected, *, scale=None, page_lens=None, return_lse=False):
    if _triton(q):
        from kernels import sparse_decode as kernel

        return kernel.sparse_prefill(q, k_cache, v_cache, block_table, positions, selected, scale=scale, page_lens=page_lens, return_lse=return_lse)
    return reference.sparse_prefill(q, k_cache, v_cache, block_table, positions, selected, scale=scale, page_lens=page_lens, return_lse=return_lse)


def dense_prefill(q, k_cache, v_cache, block_table, positions, *, scale=None, page_lens=None, return_lse=False):
    if _triton(q):
        from kernels import dense_prefill as kernel

        return kernel.dense_prefill(q, k_cache, v_cache, block_table, positions, scale=scale, page_lens=page_lens,
                                    return_lse=return_lse)
    return reference.dense_prefill(q, k_cache, v_cache, block_table, positions, scale=scale, page_lens=page_lens,
                                   return_lse=return_lse)


def write_page_summaries(k_cache, kmin, kmax, kmean, page_ids, page_lens):
    if _triton(k_cache):
        from kernels import summaries

        return summaries.write_page_summaries(k_cache, kmin, kmax, kmean, page_ids, page_lens)
    return reference.write_page_summaries(k_cache, kmin, kmax, kmean, page_ids, page_lens)


prefill_rows = reference.prefill_rows
merge_partials = reference.merge_partials
PAGE = reference.PAGE
