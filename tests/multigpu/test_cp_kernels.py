"""The context-parallel forward's kernels path (what GPU ranks run: kernels.ops dense_prefill / dense_decode /
index_block_scores / summary_block_scores / topk_blocks / sparse_decode, each rank over its own pages) against one
rank's attention, on CPU: the Triton kernels run in the interpreter, the ranks are threads of this process that run
one at a time (the interpreter is not thread-safe) and meet in each all-gather. Prompt chunks (T > 4) and decode
steps, dense and sparse layers, index-branch and page-summary selection, 2 and 3 ranks (one without pages)."""

from __future__ import annotations

import os
import threading

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from inference.attention import RepoAttention, RepoView  # noqa: E402
from inference.cp_attention import ShardedRepoAttention, ShardView  # noqa: E402
from kernels import ops  # noqa: E402
from tests.inference.conftest import random_page_pool  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy noise from the interpreter


class LockstepComm:
    """One rank of `world` threads: a rank runs only while it holds the shared lock, which it gives up while it
    waits for the others in an all-gather."""

    def __init__(self, shared: dict, rank: int):
        self.shared, self.rank, self.world, self.timeout_s = shared, rank, shared["world"], 60

    def _wait(self):
        self.shared["lock"].release()
        try:
            self.shared["barrier"].wait(timeout=120)
        finally:
            self.shared["lock"].acquire()

    def all_gather(self, tensor, out=None):
        self.shared["slots"][self.rank] = tensor.contiguous().clone()
        self._wait()  # every rank has put its part
        stacked = torch.stack(self.shared["slots"])
        self._wait()  # every rank has read them all before the next all-gather overwrites a slot
        if out is None:
            return stacked
        out.copy_(stacked)
        return out


def run_ranks(world: int, fn):
    """fn(rank, comm) on `world` lock-stepped threads -> their results in rank order (an exception re-raised)."""
    shared = dict(world=world, lock=threading.Lock(), barrier=threading.Barrier(world), slots=[None] * world)
    results, errors = [None] * world, []

    def body(rank):
        shared["lock"].acquire()
        try:
            results[rank] = fn(rank, LockstepComm(shared, rank))
        except BaseException as exc:  # noqa: BLE001 (re-raised in the test's thread)
            errors.append(exc)
            shared["barrier"].abort()
        finally:
            shared["lock"].release()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _pool(index_dim: int):
    return random_page_pool(index_dim, (300, 1, 129, 700, 128, 77, 250), seed=7)  # segments with partial last pages


@pytest.mark.parametrize("world,owners,index_dim,mode,top_k,T", [
    (2, "interleaved", 16, "minmax", 4, 37),
    (3, "two of three", 0, "minmax", 5, 37),
    (3, "two of three", 16, "minmax", 64, 37),  # every block selected: the dense branch
    (2, "interleaved", 0, "mean", 4, 3),
    (3, "interleaved", 16, "minmax", 4, 2),
])
def test_kernels_path_over_ranks_equals_one_rank(world, owners, index_dim, mode, top_k, T):
    pool, pages = _pool(index_dim)
    n = len(pages)
    owner = [b % (2 if owners == "two of three" else world) for b in range(n)]  # "two of three": rank 2 holds none
    g = torch.Generator().manual_seed(T + index_dim + top_k)
    q = torch.randn(T, 6, 24, generator=g)
    index_q = torch.randn(T, 2, index_dim, generator=g) if index_dim else None
    one = RepoAttention(pool, RepoView.build(pool, pages), sparse=True, top_k=top_k, summary_mode=mode,
                        use_kernels=False, index_dtype=torch.float32, context_dtype=torch.float32)
    want = [one(layer, q, index_q) for layer in (0, 1)]

    def rank(r, comm):
        mine = [b for b in range(n) if owner[b] == r]
        shard = ShardView(RepoView.build(pool, [pages[b] for b in mine]), torch.tensor(mine, dtype=torch.int64), n)
        attn = ShardedRepoAttention(comm, pool, shard, sparse=True, top_k=top_k, summary_mode=mode, use_kernels=True)
        outs = [attn.combine(attn.partial(layer, q, index_q)) for layer in (0, 1)]
        return outs, float(attn.stats.blocks), attn.stats.groups

    with ops.use_backend("triton"):
        results = run_ranks(world, rank)
    for outs, blocks, groups in results:
        for layer in (0, 1):
            torch.testing.assert_close(outs[layer], want[layer][0], atol=2e-5, rtol=2e-5)
        assert (blocks, groups) == (float(one.stats.blocks), one.stats.groups)
    assert all(torch.equal(results[0][0][i], res[0][i]) for res in results for i in (0, 1))  # bitwise on every rank
