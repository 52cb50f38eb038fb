"""The fixed-shape one-token decode step of the context-parallel engine, captured in a CUDA graph on NCCL ranks.

It is inference/decode_graph.py's step with each layer's repository part spread over ranks, with the selection
rule and the merge of inference/cp_attention.py that the general context-parallel forward uses, in as few
launches as the one-GPU step where it can: this rank's candidates from the one-GPU top-k op (kernels.ops), keyed
as int64 (score, global id) keys, one all-gather of the keys, a count of the keys above each candidate (the same
global top-(k-1) on every rank, no sort), attention to the picked pages it owns (-1 elsewhere, in place), and one
all-gather of the (out, lse) parts: this rank's and, on rank 0 only, the live tail's, merged by a softmax over
their lse in rank order. Each collective writes into a buffer that lives as long as the decoder, so a captured
graph replays it in place; shapes are fixed per request (the padded block table of decode_graph.py).

Capture: every rank captures its own graph of the same collectives, and all ranks capture together: rank 0 says
so in the step's command (first step, or its tail outgrew its buffer), and begin() agrees across ranks when any
rank's graph went stale (a sync reallocated its page pool). Warm-up steps run the collectives for real, the
capture itself runs none. A capture that fails on any rank switches every rank to the uncaptured step (the same
math, launched op by op) for the rest of the process: logged, and reported as `fallback` in the engine's stats.
On rank 0 a replay is awaited with the group's timeout, so a dead rank gives DistributedFailure, not a hang.

Benchmark switch, never for serving: collectives="local" replaces each all-gather by a copy of this rank's part
into its own slot (the other slots keep the last real values), so a step timed with and without it gives the
collectives' share of the step.
Non-job: commands between ranks (inference/cp_engine.py), prefill, sampling.
"""

from __future__ import annotations

import logging
import time

import torch

from inference import cp_attention as cpa
from inference.cp_attention import ShardView
from inference.decode_graph import GraphDecoder
from inference.distributed import Comm, DistributedFailure
from kernels import ops

log = logging.getLogger("msa.cp")
COLLECTIVES = ("nccl", "local")  # "nccl" means the group's backend (gloo on CPU ranks)


class ContextParallelDecoder(GraphDecoder):
    """This rank's fixed-shape decode step; `tail` is rank 0's live tail (None on the other ranks)."""

    def __init__(self, model, pool, comm: Comm, *, capture: bool):
        super().__init__(model, pool, capture=capture)
        self.comm = comm
        self.collectives = "nccl"
        self.buffers: dict[tuple, torch.Tensor] = {}
        self.fallback: str | None = None  # why this rank group steps without a graph, when capture failed
        self.recapture = True
        self.low = None  # [table width] low words of the local blocks' keys (cp_attention.block_keys)
        self.heads = torch.arange(self.cfg.num_kv_heads, device=pool.device)[:, None]
        self.every_block = False
        self.n_global = 0

    # ---- per request -----------------------------------------------------------------------------------
    def begin(self, tail, shard: ShardView, *, sparse: bool, top_k: int, summary_mode: str,
              collectives: str = "nccl") -> None:
        if collectives not in COLLECTIVES:
            raise ValueError(f"collectives must be one of {COLLECTIVES}, got {collectives!r}")
        super().begin(tail, shard.view, sparse=sparse, top_k=top_k, summary_mode=summary_mode)
        width, n = self.table.shape[1], shard.view.n_blocks
        with torch.inference_mode():
            if self.low is None or self.low.shape[0] != width:
                self.low = torch.empty(width, dtype=torch.int64, device=self.pool.device)
            self.low.zero_()  # padding columns score -inf: their keys are never picked
            self.low[:n] = cpa.id_low_words(shard.global_ids.to(self.pool.device))
        self.n_global, self.every_block = shard.n_global, shard.n_global + 1 <= top_k
        self.collectives = collectives
        if self.capture:  # one rank's stale graph means every rank captures again (same collectives)
            stale = self.graph is None or self._key() != self.key
            self.recapture = any(self.comm.gather_objects(stale))

    def plan(self, slot: int) -> bool:
        """Rank 0, before sending step `slot`: whether every rank captures its graph anew for it."""
        if not self.capture:
            return False
        return self.recapture or self.graph is None or slot + 1 > self.tail.capacity

    def step(self, token: int, slot: int, position: int, *, recapture: bool = False):
        """Runs one token on this rank; rank 0 gets fp32 logits [V] (a buffer the next step overwrites), the other
        ranks None."""
        tail = self.tail
        if tail is not None and slot + 1 > tail.capacity:
            tail.grow(-(-(slot + 1) // 256) * 256)
        with torch.inference_mode():
            self.token.fill_(token)
            self.position.fill_(position)
            self.slot.fill_(slot)
            self.steps += 1
            if self.capture and recapture:
                self._capture_everywhere()
            if not self.capture:
                logits = self._forward()
            else:
                self.graph.replay()
                logits = self.logits
                if tail is not None:
                    self._await_replay()
        return None if logits is None else logits[0]

    # ---- graph ------------------------------------------------------------------------------------------
    def _key(self) -> tuple:
        p = self.pool
        ptrs = [x.data_ptr() for x in (p.k, p.v, p.page_lens, p.index_k, p.kmin, p.kmax, p.kmean) if x is not None]
        if self.tail is not None:
            ptrs += [self.tail.k.data_ptr(), self.tail.v.data_ptr(), self.tail.capacity]
        every = self.n_global if self.every_block else None  # counted as a constant then
        return (tuple(ptrs), self.table.data_ptr(), self.table.shape[1], self.low.data_ptr(), self.sparse,
                self.top_k, self.summary_mode, every, self.collectives)

    def _capture_everywhere(self) -> None:
        error = None
        try:
            self._capture()
        except Exception as exc:  # reported to every rank below: all fall back together
            log.exception("rank %d: CUDA graph capture failed", self.comm.rank)
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.graph = self.logits = None
        failed = [(r, e) for r, e in enumerate(self.comm.gather_objects(error)) if e]
        if failed:
            self.capture, self.graph, self.logits = False, None, None
            self.fallback = "CUDA graph capture failed (" + "; ".join(f"rank {r}: {e}" for r, e in failed) + \
                "); decode steps run uncaptured"
            log.warning("context parallel: %s", self.fallback)
            return
        self.key, self.recapture = self._key(), False

    def _capture(self) -> None:
        self.graph = self.logits = None
        dev = self.pool.device
        counted = self.selected.clone()
        stream = torch.cuda.Stream(dev)
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(stream):  # warm-up: compilation, buffers, collectives run for real (same KV written)
            for _ in range(2):
                self._forward()
        torch.cuda.current_stream(dev).wait_stream(stream)
        torch.cuda.synchronize(dev)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            self.logits = self._forward()
        self.graph = graph
        self.selected.copy_(counted)  # the warm-up counted its selections too

    def _await_replay(self) -> None:
        """Rank 0: wait for the replay within the group's timeout (a captured collective never times out itself)."""
        done = torch.cuda.Event()
        done.record()
        start = time.monotonic()
        while not done.query():
            waited = time.monotonic() - start
            if waited > self.comm.timeout_s:
                raise DistributedFailure(f"rank 0: a decode step's collectives did not finish within "
                                         f"{self.comm.timeout_s:g} s; a rank died or froze")
            if waited > 0.05:
                time.sleep(0.001)

    # ---- one layer, spread over ranks --------------------------------------------------------------------
    def _attention(self, i, attn, h, q, k, v) -> torch.Tensor:
        c, pool = self.cfg, self.pool
        qb = q.reshape(1, c.num_q_heads, c.head_dim)
        if self._sparse_layer(i) and not self.every_block:
            k1 = self.top_k - 1
            scores = self._block_scores(i, qb, self._index_query(i, attn, h))  # [1, Hkv, W], -inf from block n on
            local = ops.topk_blocks(scores, self.seq_len, self.top_k)[..., :k1]  # the one-rank op: -1 pads
            keys = cpa.block_keys(scores, self.low)[0, self.heads, local[0]][None]  # -1 reads column W - 1: -inf
            gathered = self._buffer(("picks", i), keys.shape, torch.int64, cpa.candidate_buffer)
            self._exchange(keys, gathered[:-1])
            self._picks.append(gathered)
            mine = torch.where(cpa.picked(gathered, keys, k1), local, -1)
            out, lse = ops.sparse_decode(qb, pool.k[i], pool.v[i], self.table, self.seq_len, mine,
                                         page_lens=pool.page_lens, return_lse=True)
        else:
            out, lse = ops.dense_decode(qb, pool.k[i], pool.v[i], self.table, self.seq_len, page_lens=pool.page_lens,
                                        return_lse=True)
        send = self._buffer(("send", i), (2, 1, c.num_q_heads, c.head_dim + 1), torch.float32, _empty_parts)
        send[0, ..., :-1].copy_(out)
        send[0, ..., -1].copy_(lse)
        if self.tail is not None:  # the live tail, once: rank 0 sends its part beside its own (elsewhere slot 1 is empty)
            own, lse_own = self._tail_part(i, q, k, v)
            send[1, ..., :-1].copy_(own)
            send[1, ..., -1].copy_(lse_own)
        gathered = self._buffer(("out", i), send.shape, torch.float32, _stack_of_world)
        self._exchange(send, gathered)
        return cpa.merge_ranks(gathered.flatten(0, 1), guard=False)  # rank 0's tail part is never empty

    def _buffer(self, key: tuple, shape, dtype, make) -> torch.Tensor:
        """A buffer that lives as long as the decoder (a captured graph replays into it); `make(world, shape,
        device)` builds it."""
        key = (*key, tuple(shape), dtype)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = make(self.comm.world, tuple(shape), self.pool.device)
        return buf

    def _exchange(self, tensor: torch.Tensor, out: torch.Tensor) -> None:
        """All-gather into out [world, ...], or with collectives="local" a copy into this rank's own slot."""
        if self.collectives == "local":
            out[self.comm.rank].copy_(tensor)
        else:
            self.comm.all_gather(tensor, out=out)

    def _count_picks(self) -> None:
        if self._picks:
            self.selected.add_(cpa.count_picks(torch.stack(self._picks), self.top_k - 1))
        elif self.sparse and self.every_block:  # every block is selected: count them like one rank would
            n_sparse = sum(1 for i in range(self.cfg.num_layers) if self._sparse_layer(i))
            self.selected.add_(n_sparse * self.cfg.num_kv_heads * self.n_global)

    def _logits(self, x):
        return super()._logits(x) if self.tail is not None else None  # only rank 0 samples


def _empty_parts(world: int, shape, device) -> torch.Tensor:
    """A send buffer of (out, lse) parts, all empty (out 0, lse -inf): a rank without the tail sends slot 1 so."""
    buf = torch.zeros(shape, device=device)
    buf[..., -1] = float("-inf")
    return buf


def _stack_of_world(world: int, shape, device) -> torch.Tensor:
    return torch.zeros((world, *shape), device=device)

