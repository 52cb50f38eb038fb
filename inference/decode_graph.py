"""One-token decode of the live tail with fixed shapes, captured in a CUDA graph on CUDA devices.

The step reads only preallocated buffers: the token, its position and its tail slot are device tensors; the tail
KV has a fixed (rounded-up) capacity and its own tokens are attended densely under a length mask; the repository
block table is a static, padded buffer refreshed by copy for each request; the repository part goes through
`kernels.ops` (MSA scores, top-k, sparse attention, or dense attention over every page); the two parts are merged
by log-sum-exp. Q/K/V and gate/up projections run as one matrix product each. The graph is captured again only
when what it points at changes: the page pool or tail buffers were reallocated (a sync that grew the pool, a tail
that outgrew its capacity) or the padded table width changed. Not here: prefill, sampling, stop rules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inference import rope
from inference.kv_cache import PAGE, PagePool
from kernels import ops

TAIL_ROUND = 256  # tail capacity grows in steps of this many tokens
TABLE_ROUND = 64  # the padded block table grows in steps of this many blocks


def _round_up(n: int, step: int) -> int:
    return (n + step - 1) // step * step


def _rms(x: torch.Tensor, norm, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Same function as model.RMSNorm (normalise in fp32, cast, scale) with fewer kernels."""
    y = F.rms_norm(x.float(), (x.shape[-1],), eps=norm.eps)
    w = norm.weight if weight is None else weight
    if norm.gemma:
        return (y * (1.0 + w.float())).to(x.dtype)
    return w * y.to(x.dtype)


def fuse_projections(model: nn.Module) -> None:
    """Store each layer's q/k/v and gate/up weights in one tensor, the old parameters becoming views of it
    (same values, no extra memory), so a decode step runs one matrix product for each group."""
    with torch.no_grad():
        for layer in model.layers:
            for parent, names, attr in ((layer.self_attn, ("q_proj", "k_proj", "v_proj"), "qkv"),
                                        (layer.mlp, ("gate_proj", "up_proj"), "gate_up")):
                if hasattr(parent, attr + "_weight"):
                    continue
                mods = [getattr(parent, n) for n in names]
                weight = torch.cat([m.weight for m in mods])
                bias = torch.cat([m.bias for m in mods]) if mods[0].bias is not None else None
                start = 0
                for m in mods:
                    rows = m.weight.shape[0]
                    m.weight = nn.Parameter(weight[start : start + rows], requires_grad=False)
                    if bias is not None:
                        m.bias = nn.Parameter(bias[start : start + rows], requires_grad=False)
                    start += rows
                setattr(parent, attr + "_weight", weight)
                setattr(parent, attr + "_bias", bias)


class GraphDecoder:
    """Decode steps of one token over (repository pages, live tail) with fixed shapes; capture=True records the
    step once in a CUDA graph and replays it."""

    def __init__(self, model: nn.Module, pool: PagePool, *, capture: bool):
        if capture and pool.device.type != "cuda":
            raise ValueError("CUDA graph capture needs a CUDA device")
        fuse_projections(model)
        self.model, self.cfg, self.pool, self.capture = model, model.cfg, pool, capture
        dev = pool.device
        with torch.inference_mode():
            self.token = torch.zeros(1, dtype=torch.long, device=dev)
            self.position = torch.zeros(1, dtype=torch.long, device=dev)
            self.slot = torch.zeros(1, dtype=torch.long, device=dev)  # tail index of the new token
            self.seq_len = torch.ones(1, dtype=torch.int32, device=dev)  # repository blocks * PAGE + 1
            self.n_blocks = torch.zeros(1, dtype=torch.int32, device=dev)
            self.selected = torch.zeros((), dtype=torch.long, device=dev)  # repository blocks read, summed
        c = self.cfg
        qk_weights = []
        for layer in model.layers:
            attn = layer.self_attn
            if c.qk_norm:  # one norm over the q and k heads together
                qk_weights.append(torch.cat([attn.q_norm.weight.detach()[None].expand(c.num_q_heads, -1),
                                             attn.k_norm.weight.detach()[None].expand(c.num_kv_heads, -1)]))
        self.qk_norm_weight = qk_weights
        self.table = None
        self.tail = None
        self.graph = None
        self.key = None
        self.logits = None
        self.steps = 0
        self.sparse = True
        self.top_k, self.summary_mode = 16, "minmax"

    # ---- per request -----------------------------------------------------------------------------------
    def begin(self, tail, view, *, sparse: bool, top_k: int, summary_mode: str) -> None:
        """Point the step at this request's repository view and tail; counts selections from zero."""
        dev = self.pool.device
        width = _round_up(view.n_blocks + 1, TABLE_ROUND)
        with torch.inference_mode():
            if self.table is None or self.table.shape[1] != width:
                self.table = torch.zeros(1, width, dtype=torch.int32, device=dev)
            self.table.zero_()
            self.table[0, : view.n_blocks + 1] = view.block_table
            self.seq_len.fill_(view.n_blocks * PAGE + 1)
            self.n_blocks.fill_(view.n_blocks)
            self.selected.zero_()
        self.tail, self.sparse, self.top_k, self.summary_mode = tail, sparse, top_k, summary_mode
        self.steps = 0

    def step(self, token: int, slot: int, position: int) -> torch.Tensor:
        """Run token at tail index `slot` (earlier slots hold the tail's KV) and absolute `position`;
        returns fp32 logits [V] (on the graph path a buffer overwritten by the next step)."""
        tail = self.tail
        if slot + 1 > tail.capacity:
            tail.grow(_round_up(slot + 1, TAIL_ROUND))
        with torch.inference_mode():
            self.token.fill_(token)
            self.position.fill_(position)
            self.slot.fill_(slot)
            self.steps += 1
            if not self.capture:
                return self._forward()[0]
            key = self._key()
            if self.graph is None or key != self.key:
                self._capture()
                self.key = key
            self.graph.replay()
            return self.logits[0]

    def selection_counts(self) -> tuple[torch.Tensor, int]:
        """(repository blocks read, summed on the device; (step, sparse layer, group) triples) since begin()."""
        n_sparse = sum(1 for i in range(self.cfg.num_layers) if self._sparse_layer(i))
        return self.selected.clone(), self.steps * n_sparse * self.cfg.num_kv_heads

    # ---- graph ------------------------------------------------------------------------------------------
    def _key(self) -> tuple:
        p, t = self.pool, self.tail
        ptrs = [x.data_ptr() for x in (p.k, p.v, p.page_lens, p.index_k, p.kmin, p.kmax, p.kmean, t.k, t.v) if x is not None]
        return (tuple(ptrs), self.table.data_ptr(), self.table.shape[1], t.capacity, self.sparse, self.top_k,
                self.summary_mode)

    def _capture(self) -> None:
        self.graph = self.logits = None
        counted = self.selected.clone()
        stream = torch.cuda.Stream(self.pool.device)
        stream.wait_stream(torch.cuda.current_stream(self.pool.device))
        with torch.cuda.stream(stream):  # warm-up: Triton compilation, cuBLAS handles (writes the same KV)
            for _ in range(2):
                self._forward()
        torch.cuda.current_stream(self.pool.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self._forward()
        self.graph = graph
        self.selected.copy_(counted)  # the warm-up counted its selections too

    # ---- the step -----------------------------------------------------------------------------------------
    def _sparse_layer(self, layer: int) -> bool:
        return self.sparse and self.cfg.sparse_layers[layer]

    def _forward(self) -> torch.Tensor:
        m, c = self.model, self.cfg
        Hq, Hkv, d = c.num_q_heads, c.num_kv_heads, c.head_dim
        x = m.embed_tokens(self.token)  # (1, hidden)
        dtype = x.dtype
        cos, sin = rope.cos_sin(self.position, m.rope_freq, m.rope_factor, dtype)
        self._index_rope = rope.cos_sin(self.position, m.index_rope_freq, 1.0, dtype) if c.has_index_branch else None
        self._picks = []
        if self.tail is not None:  # slots after the new token masked
            slots = torch.arange(self.tail.capacity, device=x.device)
            self._tail_bias = torch.zeros(self.tail.capacity, device=x.device).masked_fill(slots > self.slot,
                                                                                            float("-inf"))
        for i, layer in enumerate(m.layers):
            attn = layer.self_attn
            h = _rms(x, layer.input_layernorm)
            qkv = F.linear(h, attn.qkv_weight, attn.qkv_bias)  # (1, (Hq + 2 Hkv) d)
            qk = qkv[:, : (Hq + Hkv) * d].view(1, Hq + Hkv, d)
            if c.qk_norm:
                qk = _rms(qk, attn.q_norm, self.qk_norm_weight[i])
            qk = rope.rotate(qk, cos, sin)
            q, k = qk[0, :Hq], qk[0, Hq:]
            v = qkv[0, (Hq + Hkv) * d :].view(Hkv, 1, d)
            out = self._attention(i, attn, h, q, k, v)  # fp32 (1, Hq, d)
            x = x + F.linear(out.view(1, Hq * d).to(dtype), attn.o_proj.weight, attn.o_proj.bias)
            gate, up = F.linear(_rms(x, layer.post_attention_layernorm), layer.mlp.gate_up_weight,
                                layer.mlp.gate_up_bias).chunk(2, -1)
            x = x + layer.mlp.down_proj(F.silu(gate) * up)
        self._count_picks()
        return self._logits(x)

    # one layer's attention: the tail's own tokens and the repository pages, merged (context parallel overrides)
    def _attention(self, i, attn, h, q, k, v) -> torch.Tensor:
        own, lse_own = self._tail_part(i, q, k, v)
        rep, lse_rep = self._repo_part(i, attn, h, q)
        lse = torch.logaddexp(lse_own, lse_rep)
        return own * torch.exp(lse_own - lse)[..., None] + rep.float() * torch.exp(lse_rep - lse)[..., None]

    def _tail_part(self, i, q, k, v) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes the new token's k, v at its tail slot; (out fp32 (1, Hq, d), lse (1, Hq)) over the tail's own
        tokens, slots after the new token masked."""
        c, tail = self.cfg, self.tail
        Hq, Hkv, d = c.num_q_heads, c.num_kv_heads, c.head_dim
        tail.k[i].index_copy_(1, self.slot, k.view(Hkv, 1, d))
        tail.v[i].index_copy_(1, self.slot, v)
        s = torch.baddbmm(self._tail_bias, q.float().view(Hkv, Hq // Hkv, d), tail.k[i].float().transpose(1, 2),
                          alpha=d**-0.5)
        lse_own = torch.logsumexp(s, -1)  # (Hkv, G), finite: the new token sees itself
        own = torch.bmm(torch.exp(s - lse_own[..., None]), tail.v[i].float()).view(1, Hq, d)
        return own, lse_own.view(1, Hq)

    def _index_query(self, i, attn, h) -> torch.Tensor | None:
        """The MSA index query (1, Hkv, d_idx) of a layer with an index branch, else None."""
        pool, c = self.pool, self.cfg
        if not (attn.has_index and i in pool.index_slot):
            return None
        icos, isin = self._index_rope
        iq = _rms(attn.index_q_proj(h).view(1, c.num_kv_heads, c.index_dim), attn.index_q_norm)
        return rope.rotate(iq, icos, isin)

    def _block_scores(self, i, q, iq) -> torch.Tensor:
        """fp32 [1, Hkv, table width] scores of the table's history blocks (-inf elsewhere)."""
        pool = self.pool
        if iq is not None:
            return ops.index_block_scores(iq[0][None].contiguous(), pool.index_k[pool.index_slot[i]], self.table,
                                          self.seq_len, page_lens=pool.page_lens)
        return ops.summary_block_scores(q, pool.kmin[i], pool.kmax[i], self.table, self.seq_len, kmean=pool.kmean[i],
                                        mode=self.summary_mode, page_lens=pool.page_lens)

    def _repo_part(self, i, attn, h, q) -> tuple[torch.Tensor, torch.Tensor]:
        pool, c, rows = self.pool, self.cfg, self.table
        qb = q.reshape(1, c.num_q_heads, c.head_dim)
        if self._sparse_layer(i):
            scores = self._block_scores(i, qb, self._index_query(i, attn, h))
            sel = ops.topk_blocks(scores, self.seq_len, self.top_k)  # the local block is the empty page 0
            self._picks.append(sel)
            return ops.sparse_decode(qb, pool.k[i], pool.v[i], rows, self.seq_len, sel, page_lens=pool.page_lens,
                                     return_lse=True)
        return ops.dense_decode(qb, pool.k[i], pool.v[i], rows, self.seq_len, page_lens=pool.page_lens, return_lse=True)

    def _count_picks(self) -> None:
        if self._picks:
            sel = torch.stack(self._picks)
            self.selected.add_(((sel >= 0) & (sel < self.n_blocks)).sum())

    def _logits(self, x) -> torch.Tensor:
        m = self.model
        return m.lm_head(_rms(x, m.norm)).float()
