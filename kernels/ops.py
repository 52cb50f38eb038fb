"""The one switch the engine calls: each MSA op runs as a Triton kernel on CUDA tensors and as the
pure-torch reference on CPU tensors. Shapes and semantics are those of `kernels.reference`.

Override with `use_backend("triton" | "reference" | "auto")` (a context manager, for tests and benchmarks) or the
environment variable MSA_KERNELS ("triton" forces Triton even on CPU tensors, which needs TRITON_INTERPRET=1).
Not here: the kernels themselves.
"""

from __future__ import annotations

import os

from kernels import reference

_BACKENDS = ("auto", "triton", "reference")
_backend = os.environ.get("MSA_KERNELS", "auto")
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


def sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, *, scale=None, page_lens=None, return_lse=False):
    if _triton(q):
        from kernels import sparse_decode as kernel

        return kernel.sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, scale=scale, page_lens=page_lens, return_lse=return_lse)
    return reference.sparse_decode(q, k_cache, v_cache, block_table, seq_lens, selected, scale=scale, page_lens=page_lens, return_lse=return_lse)


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


def write_page_summaries(k_cache, kmin, kmax, kmean, page_ids, page_lens):
    if _triton(k_cache):
        from kernels import summaries

        return summaries.write_page_summaries(k_cache, kmin, kmax, kmean, page_ids, page_lens)
    return reference.write_page_summaries(k_cache, kmin, kmax, kmean, page_ids, page_lens)


prefill_rows = reference.prefill_rows
merge_partials = reference.merge_partials
PAGE = reference.PAGE
