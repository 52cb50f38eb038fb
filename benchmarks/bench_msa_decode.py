"""Decode-time cost of MSA against dense attention on one GPU: per layer, and for a whole 1.5B-shaped model step.

Per layer (Hq/Hkv/d = 28/4/128 and 64/4/128, bf16, one sequence of N tokens, N = 32k..1M):
  dense   torch SDPA with GQA over contiguous K/V;
  ours    scores + top-k (15 history + local) + block-sparse flash-decoding, for page summaries (Quest min/max and
          mean) and for M3 per-token index keys; each also split into its three stages (five launches);
  fused   min/max summaries in two launches (scores + top-k fused, attention + split merge fused:
          `kernels.fused_decode`), with bf16 K/V ("fused") and with fp8 e4m3 K/V pages ("fp8"), each also split
          into its two launches; and in three ("three": summary scores, one-launch top-k resolving the pages
          (`kernels.score_select`), merged attention);
  floors  bytes each must read / measured device-to-device copy bandwidth (fp8: the K/V pages at one byte).
Every timed region is one CUDA graph over several layers with their own buffers (so repeated replays do not
measure the 50 MB L2), median of replays. Whole step: 28 layers, 12/2 heads, d 128, ff 8960, vocab 151936,
random bf16 weights, KV cache of N tokens, dense SDPA vs MSA (every layer sparse), one CUDA graph per step.
Order: per-layer rows at the first Hq, the whole step, then the other Hq (so a time limit cuts the least wanted).
Launch parameters: the library's table for the GPU (`kernels.launch_configs`), or a sweep at 1M with --tune.
--out is rewritten after every measured row ("complete": false until the end; --time-budget skips what is left,
listed in "skipped"). Prints a table and ends with one JSON line. Needs a CUDA GPU (not --plan / --help).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from kernels import fp8_kv, fused_decode, index_scores, launch_configs, reference, score_select, sparse_decode, summaries, topk

PAGE = 128
POOL_PAGES = 8192  # physical pages of the shared per-layer K/V pool (1M tokens)
TOPK = 16
MB = 1 << 20
DEV = "cuda"
DTYPE = torch.bfloat16


def graph_ms(fn, replays=15):
    """Median milliseconds of one replay of a CUDA graph of fn()."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
        fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    del g
    return statistics.median(times)


def copy_bandwidth():
    """Bytes per second of a 2 GiB device-to-device copy, read + write counted."""
    x = torch.empty(1 << 30, dtype=DTYPE, device=DEV).normal_()
    y = torch.empty_like(x)
    ms = graph_ms(lambda: y.copy_(x), replays=10)
    del x, y
    return 2 * (2 << 30) / (ms / 1e3)


class LayerBench:
    """Buffers for the per-layer comparison at one KV-head count (K/V pool shared by all N and Hq)."""

    def __init__(self, Hkv, d, d_idx=128, n_copies=16):
        self.Hkv, self.d, self.n_copies = Hkv, d, n_copies
        kv_shape = (POOL_PAGES, Hkv, PAGE, d)
        self.k = torch.randn(kv_shape, dtype=DTYPE, device=DEV)
        self.v = torch.randn(kv_shape, dtype=DTYPE, device=DEV)
        self.dense_k = torch.randn(1, Hkv, POOL_PAGES * PAGE, d, dtype=DTYPE, device=DEV)
        self.dense_v = torch.randn_like(self.dense_k)
        lo, hi, mean = (torch.empty(POOL_PAGES, Hkv, d, dtype=DTYPE, device=DEV) for _ in range(3))
        summaries.write_page_summaries(self.k, lo, hi, mean, torch.arange(POOL_PAGES, device=DEV), torch.full((POOL_PAGES,), PAGE, device=DEV))
        self.kmin = [lo.clone() for _ in range(n_copies)]  # one copy per layer: no layer reads another's rows from L2
        self.kmax = [hi.clone() for _ in range(n_copies)]
        self.kmean = [mean.clone() for _ in range(n_copies)]
        self.index = [torch.randn(POOL_PAGES, PAGE, d_idx, dtype=DTYPE, device=DEV) for _ in range(n_copies)]
        self.d_idx = d_idx
        all_pages = torch.arange(POOL_PAGES, device=DEV)
        self.k8, self.ks = fp8_kv.empty_pages(POOL_PAGES, Hkv, d, device=DEV)
        self.v8, self.vs = fp8_kv.empty_pages(POOL_PAGES, Hkv, d, device=DEV)
        for lo_page in range(0, POOL_PAGES, 1024):  # in slices: the fp32 temporaries stay small
            ids = all_pages[lo_page : lo_page + 1024]
            fp8_kv.quantize_pages(self.k[ids], self.k8, self.ks, ids)
            fp8_kv.quantize_pages(self.v[ids], self.v8, self.vs, ids)

    def run(self, N, Hq, bw, cfg):
        Hkv, d = self.Hkv, self.d
        nb = (N + PAGE - 1) // PAGE
        seq = torch.tensor([N], dtype=torch.int32, device=DEV)
        kv_read = TOPK * Hkv * PAGE * d * 2 * 2
        side = 2 * Hkv * nb * 4 + nb * 4  # scores written + read, block table
        floors = {
            "dense": N * Hkv * d * 2 * 2,
            "minmax": nb * Hkv * d * 2 * 2 + side + kv_read,
            "mean": nb * Hkv * d * 2 + side + kv_read,
            "index": nb * PAGE * self.d_idx * 2 + side + kv_read,
            "fused": nb * Hkv * d * 2 * 2 + side + kv_read,
            "three": nb * Hkv * d * 2 * 2 + side + kv_read,
            "fp8": nb * Hkv * d * 2 * 2 + side + kv_read // 2 + TOPK * Hkv * 4 * 2,
        }
        row = {"N": N, "Hq": Hq, "Hkv": Hkv, "d": d}
        # dense: layers at disjoint token ranges of one contiguous buffer
        n_dense = max(2, min(POOL_PAGES * PAGE // N, math.ceil(256 * MB / floors["dense"])))
        qd = [torch.randn(1, Hq, 1, d, dtype=DTYPE, device=DEV) for _ in range(n_dense)]

        def dense():
            for i in range(n_dense):
                off = (i * N) % (POOL_PAGES * PAGE - N + 1)
                F.scaled_dot_product_attention(qd[i], self.dense_k[:, :, off : off + N], self.dense_v[:, :, off : off + N], enable_gqa=True)

        row["dense_ms"] = graph_ms(dense) / n_dense
        # ours: each layer its own block table (random pool pages), queries and summary/index buffers
        for variant in ("minmax", "mean", "index"):
            n_layers = max(4, min(self.n_copies, math.ceil(256 * MB / floors[variant])))
            tables = [torch.randperm(POOL_PAGES, device=DEV)[:nb].to(torch.int32)[None] for _ in range(n_layers)]
            qs = [torch.randn(1, Hq, d, dtype=DTYPE, device=DEV) for _ in range(n_layers)]
            qi = [torch.randn(1, Hkv, self.d_idx, dtype=DTYPE, device=DEV) for _ in range(n_layers)]
            c = [i % self.n_copies for i in range(n_layers)]

            def score(i):
                if variant == "index":
                    return index_scores.index_block_scores(qi[i], self.index[c[i]], tables[i], seq, **cfg["index"])
                return index_scores.summary_block_scores(qs[i], self.kmin[c[i]], self.kmax[c[i]], tables[i], seq, kmean=self.kmean[c[i]], mode=variant, **cfg["summary"])

            scores = [score(i) for i in range(n_layers)]
            sels = [topk.topk_blocks(s, seq, TOPK, **cfg["topk"]) for s in scores]
            attend = lambda i, sel: sparse_decode.sparse_decode(qs[i], self.k, self.v, tables[i], seq, sel, **cfg["decode"])  # noqa: E731

            def e2e():
                for i in range(n_layers):
                    attend(i, topk.topk_blocks(score(i), seq, TOPK, **cfg["topk"]))

            row[f"{variant}_ms"] = graph_ms(e2e) / n_layers
            row[f"{variant}_score_ms"] = graph_ms(lambda: [score(i) for i in range(n_layers)]) / n_layers
            row[f"{variant}_topk_ms"] = graph_ms(lambda: [topk.topk_blocks(scores[i], seq, TOPK, **cfg["topk"]) for i in range(n_layers)]) / n_layers
            row[f"{variant}_attn_ms"] = graph_ms(lambda: [attend(i, sels[i]) for i in range(n_layers)]) / n_layers
            if N <= 150_000:  # spot check against the reference on the benchmark's own data
                want_sel = reference.topk_blocks(scores[0].cpu(), seq.cpu(), TOPK)
                assert torch.equal(sels[0].cpu(), want_sel), f"{variant}: top-k differs from the reference"
                want = reference.sparse_decode(qs[0], self.k, self.v, tables[0], seq, sels[0])
                got = attend(0, sels[0])
                rel = ((got.float() - want.float()).norm() / want.float().norm()).item()
                assert rel < 1e-2, f"{variant}: attention error {rel}"
        for variant in ("fused", "three", "fp8"):
            try:
                self.run_fused(variant, N, Hq, nb, seq, floors[variant], cfg, row)
            except Exception as exc:  # recorded in the result, never hidden: the other variants still report
                row[f"{variant}_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                print(f"  {variant} at N={N}, Hq={Hq} failed: {row[f'{variant}_error']}", file=sys.stderr)
        for name, nbytes in floors.items():
            row[f"{name}_floor_ms"] = nbytes / bw * 1e3
        return row

    def run_fused(self, variant, N, Hq, nb, seq, floor_bytes, cfg, row):
        """Min/max path in two launches with bf16 K/V ("fused") or fp8 K/V pages ("fp8"), or in three ("three":
        summary scores, one-launch top-k with page resolution `score_select`, merged attention)."""
        n_layers = max(4, min(self.n_copies, math.ceil(256 * MB / floor_bytes)))
        tables = [torch.randperm(POOL_PAGES, device=DEV)[:nb].to(torch.int32)[None] for _ in range(n_layers)]
        qs = [torch.randn(1, Hq, self.d, dtype=DTYPE, device=DEV) for _ in range(n_layers)]
        c = [i % self.n_copies for i in range(n_layers)]
        kc, vc, sc = (self.k8, self.v8, {"k_scale": self.ks, "v_scale": self.vs}) if variant == "fp8" else (self.k, self.v, {})
        if variant == "three":
            pick_cfg = {"chunk": cfg["topk"].get("chunk"), "num_warps": cfg["topk"].get("num_warps"),
                        "trigger": cfg["fused_decode"].get("pdl", False)}

            def select(i):
                s = index_scores.summary_block_scores(qs[i], self.kmin[c[i]], self.kmax[c[i]], tables[i], seq, **cfg["summary"])
                return (s, *score_select.score_select(s, tables[i], seq, TOPK, **pick_cfg))
        else:
            select = lambda i: fused_decode.summary_topk(qs[i], self.kmin[c[i]], self.kmax[c[i]], tables[i], seq, TOPK, **cfg["fused_topk"])  # noqa: E731
        picks = [select(i) for i in range(n_layers)]

        def attend(i, pick):
            return fused_decode.sparse_decode_merged(qs[i], kc, vc, tables[i], seq, pick[1], pages=pick[2], counts=pick[3], **sc, **cfg["fused_decode"])

        def step(i):
            if variant == "three":
                pick = select(i)
                return attend(i, pick), pick[1]
            return fused_decode.summary_sparse_decode(qs[i], self.kmin[c[i]], self.kmax[c[i]], kc, vc, tables[i], seq, TOPK, **sc,
                                                      topk_cfg=cfg["fused_topk"], decode_cfg=cfg["fused_decode"])

        def e2e():
            for i in range(n_layers):
                step(i)

        row[f"{variant}_ms"] = graph_ms(e2e) / n_layers
        row[f"{variant}_select_ms"] = graph_ms(lambda: [select(i) for i in range(n_layers)]) / n_layers
        row[f"{variant}_attn_ms"] = graph_ms(lambda: [attend(i, picks[i]) for i in range(n_layers)]) / n_layers
        if N <= 150_000:  # spot check against the references on the benchmark's own data
            scores, sel = picks[0][0], picks[0][1]
            want_scores = reference.summary_block_scores(qs[0], self.kmin[c[0]], self.kmax[c[0]], tables[0], seq)
            fin = torch.isfinite(want_scores)
            assert torch.allclose(scores[fin], want_scores[fin], atol=1e-2, rtol=1e-4), f"{variant}: scores differ from the reference"
            assert torch.equal(sel.cpu(), reference.topk_blocks(scores.cpu(), seq.cpu(), TOPK)), f"{variant}: top-k differs from the reference"
            want = reference.sparse_decode(qs[0], kc, vc, tables[0], seq, sel, **sc)
            got = attend(0, picks[0])
            rel = ((got.float() - want.float()).norm() / want.float().norm()).item()
            assert rel < 1e-2, f"{variant}: attention error {rel}"
            both, both_sel = step(0)
            assert torch.equal(both_sel, sel) and torch.equal(both, got), f"{variant}: the whole step differs from its parts"


def tune(lb, bw):
    """Pick launch parameters at 1M tokens, Hq=28, by timing each candidate kernel in a graph."""
    N, Hq = POOL_PAGES * PAGE, 28
    nb = N // PAGE
    seq = torch.tensor([N], dtype=torch.int32, device=DEV)
    tables = [torch.randperm(POOL_PAGES, device=DEV)[:nb].to(torch.int32)[None] for _ in range(4)]
    q = torch.randn(1, Hq, lb.d, dtype=DTYPE, device=DEV)
    qi = torch.randn(1, lb.Hkv, lb.d_idx, dtype=DTYPE, device=DEV)
    out, log = {}, []

    def best(name, fn, options):
        timed = []
        for opt in options:
            try:
                ms = graph_ms(lambda: [fn(i, opt) for i in range(4)]) / 4
            except Exception as exc:  # a configuration that does not compile is skipped, and said
                print(f"  tune {name} {opt}: failed ({type(exc).__name__}: {str(exc)[:80]})", file=sys.stderr)
                continue
            timed.append((ms, opt))
            log.append({"kernel": name, **opt, "ms": ms})
        if not timed:  # every option failed: the kernel's defaults stay, and its variants report the error
            out[name] = {}
            return
        out[name] = min(timed, key=lambda t: t[0])[1]
        print(f"  tune {name}: " + ", ".join(f"{o}={ms * 1e3:.1f}us" for ms, o in timed), file=sys.stderr)

    best("index", lambda i, o: index_scores.index_block_scores(qi, lb.index[i], tables[i], seq, **o),
         [{"pages_per_program": p, "num_warps": w, "num_stages": s} for p in (8, 16, 32) for w in (4, 8) for s in (2, 3, 4)])
    best("summary", lambda i, o: index_scores.summary_block_scores(q, lb.kmin[i], lb.kmax[i], tables[i], seq, **o),
         [{"block_pages": p, "num_warps": w} for p in (16, 32, 64) for w in (2, 4, 8)])
    scores = index_scores.summary_block_scores(q, lb.kmin[0], lb.kmax[0], tables[0], seq)
    best("topk", lambda i, o: topk.topk_blocks(scores, seq, TOPK, **o),
         [{"chunk": c, "num_warps": w, "merge_warps": m} for c in (128, 256, 512, 1024) for w in (1, 4) for m in (1, 4)])
    sel = topk.topk_blocks(scores, seq, TOPK)
    best("decode", lambda i, o: sparse_decode.sparse_decode(q, lb.k, lb.v, tables[0], seq, sel, **o),
         [{"block_n": b, "num_warps": w, "num_stages": s} for b in (64, 128) for w in (4, 8) for s in (1, 2)])
    best("fused_topk", lambda i, o: fused_decode.summary_topk(q, lb.kmin[i], lb.kmax[i], tables[i], seq, TOPK, **o),
         [{"block_pages": p, "dim_chunk": c, "num_warps": w} for p in (64, 128, 256) for c in (16, 32, 64) for w in (4, 8)])
    pick = fused_decode.summary_topk(q, lb.kmin[0], lb.kmax[0], tables[0], seq, TOPK)
    best("fused_decode", lambda i, o: fused_decode.sparse_decode_merged(q, lb.k, lb.v, tables[0], seq, pick[1], pages=pick[2], counts=pick[3], **o),
         [{"block_n": b, "units_per_split": u, "num_warps": w, "num_stages": s}
          for b, u in ((64, 1), (64, 2), (128, 1)) for w in (4, 8) for s in (1, 2)])
    # programmatic dependent launch between the two launches: timed on the pair, as the layer runs them
    best("fused_pdl", lambda i, o: fused_decode.summary_sparse_decode(
        q, lb.kmin[i], lb.kmax[i], lb.k, lb.v, tables[i], seq, TOPK,
        topk_cfg={**out["fused_topk"], "trigger": o["pdl"]}, decode_cfg={**out["fused_decode"], "pdl": o["pdl"]}),
        [{"pdl": False}, {"pdl": True}])
    pdl = out.pop("fused_pdl").get("pdl", False)
    out["fused_topk"] = {**out["fused_topk"], "trigger": pdl}
    out["fused_decode"] = {**out["fused_decode"], "pdl": pdl}
    return out, log


# ---- whole decode step of a 1.5B-shaped model ---------------------------------------------------------------------


class Model:
    """Random-weight Qwen2.5-1.5B-shaped decoder for one decode step at a fixed cache length."""

    def __init__(self, N, mode, layers=28, hidden=1536, Hq=12, Hkv=2, d=128, ff=8960, vocab=151936):
        self.N, self.mode, self.Hq, self.Hkv, self.d = N, mode, Hq, Hkv, d
        w = lambda *s: (torch.randn(*s, device=DEV) * 0.02).to(DTYPE)  # noqa: E731
        self.embed, self.lm_head = w(vocab, hidden), w(vocab, hidden)
        self.layers = [dict(qkv=w((Hq + 2 * Hkv) * d, hidden), qkv_b=w((Hq + 2 * Hkv) * d), o=w(hidden, Hq * d),
                            gate_up=w(2 * ff, hidden), down=w(hidden, ff), n1=w(hidden) + 1, n2=w(hidden) + 1) for _ in range(layers)]
        self.norm = w(hidden) + 1
        nb = (N + PAGE - 1) // PAGE
        self.pos = torch.tensor([N - 1], device=DEV)
        self.seq = torch.tensor([N], dtype=torch.int32, device=DEV)
        inv = 1.0 / (1e6 ** (torch.arange(0, d, 2, device=DEV).float() / d))
        ang = (N - 1) * inv
        self.cos, self.sin = torch.cat([ang.cos(), ang.cos()]).to(DTYPE), torch.cat([ang.sin(), ang.sin()]).to(DTYPE)
        if mode == "dense":
            self.kc = [torch.randn(1, Hkv, N, d, dtype=DTYPE, device=DEV) for _ in range(layers)]
            self.vc = [torch.randn_like(k) for k in self.kc]
        else:
            self.table = torch.randperm(nb, device=DEV).to(torch.int32)[None]
            self.kc = [torch.randn(nb, Hkv, PAGE, d, dtype=DTYPE, device=DEV) for _ in range(layers)]
            self.vc = [torch.randn_like(k) for k in self.kc]
            self.kmin, self.kmax = [], []
            for k in self.kc:
                lo, hi = torch.empty(nb, Hkv, d, dtype=DTYPE, device=DEV), torch.empty(nb, Hkv, d, dtype=DTYPE, device=DEV)
                summaries.write_page_summaries(k, lo, hi, None, torch.arange(nb, device=DEV), torch.full((nb,), PAGE, device=DEV))
                self.kmin.append(lo)
                self.kmax.append(hi)
            page = self.table[0, (N - 1) // PAGE].long()
            self.rows = (page * Hkv + torch.arange(Hkv, device=DEV)) * PAGE + (N - 1) % PAGE
        self.token = torch.tensor([1], device=DEV)

    def rope(self, x):
        h = x.shape[-1] // 2
        return x * self.cos + torch.cat([-x[..., h:], x[..., :h]], -1) * self.sin

    def step(self, cfg):
        x = self.embed[self.token]  # [1, hidden]
        Hq, Hkv, d = self.Hq, self.Hkv, self.d
        for i, L in enumerate(self.layers):
            h = F.rms_norm(x, (x.shape[-1],), L["n1"])
            qkv = F.linear(h, L["qkv"], L["qkv_b"])
            q, k, v = qkv.split([Hq * d, Hkv * d, Hkv * d], -1)
            q, k, v = self.rope(q.view(Hq, d)), self.rope(k.view(Hkv, d)), v.view(Hkv, d)
            if self.mode == "dense":
                self.kc[i].index_copy_(2, self.pos, k.view(1, Hkv, 1, d))
                self.vc[i].index_copy_(2, self.pos, v.view(1, Hkv, 1, d))
                o = F.scaled_dot_product_attention(q.view(1, Hq, 1, d), self.kc[i], self.vc[i], enable_gqa=True)
            else:
                self.kc[i].view(-1, d).index_copy_(0, self.rows, k)
                self.vc[i].view(-1, d).index_copy_(0, self.rows, v)
                qb = q.view(1, Hq, d)
                if self.mode == "msa_fused":
                    o, _ = fused_decode.summary_sparse_decode(qb, self.kmin[i], self.kmax[i], self.kc[i], self.vc[i], self.table, self.seq,
                                                              TOPK, topk_cfg=cfg["fused_topk"], decode_cfg=cfg["fused_decode"])
                else:
                    s = index_scores.summary_block_scores(qb, self.kmin[i], self.kmax[i], self.table, self.seq, **cfg["summary"])
                    sel = topk.topk_blocks(s, self.seq, TOPK, **cfg["topk"])
                    o = sparse_decode.sparse_decode(qb, self.kc[i], self.vc[i], self.table, self.seq, sel, **cfg["decode"])
            x = x + F.linear(o.reshape(1, Hq * d), L["o"])
            h = F.rms_norm(x, (x.shape[-1],), L["n2"])
            gate, up = F.linear(h, L["gate_up"]).chunk(2, -1)
            x = x + F.linear(F.silu(gate) * up, L["down"])
        return F.linear(F.rms_norm(x, (x.shape[-1],), self.norm), self.lm_head)


def model_step_ms(N, mode, cfg):
    m = Model(N, mode)
    ms = graph_ms(lambda: m.step(cfg), replays=10)
    del m
    torch.cuda.empty_cache()
    return ms


class Results:
    """The run's result, rewritten to --out (atomically) after every measured row: a time limit keeps what was done."""

    def __init__(self, path, t0, **head):
        self.path, self.t0 = path, t0
        self.data = {"bench": "msa_decode", **head, "per_layer": [], "model_step": [], "skipped": [], "complete": False}

    def save(self):
        self.data["seconds"] = time.time() - self.t0
        if self.path:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                f.write(json.dumps(self.data) + "\n")
            os.replace(tmp, self.path)

    def add(self, key, row):
        self.data[key].append(row)
        self.save()


def plan(args):
    """The work of a run, most wanted first: per-layer rows at the first Hq, the whole-step model, then the rest."""
    sizes = [int(n) for n in args.sizes.split(",") if n]
    hqs = [int(h) for h in args.hq.split(",") if h]
    steps = [("layer", hqs[0], n) for n in sizes] if hqs else []
    steps += [("model", None, int(n)) for n in args.model_sizes.split(",") if n]
    steps += [("layer", hq, n) for hq in hqs[1:] for n in sizes]
    return steps


def print_tables(card, rows, step):
    hdr = f"{'Hq':>3} {'N':>8} | {'dense':>7} {'floor':>6} | {'minmax':>7} {'floor':>6} {'x':>5} | {'mean':>7} {'floor':>6} {'x':>5} | {'index':>7} {'floor':>6} {'x':>5} | stages index: score/topk/attn (us)"
    print(f"\nper-layer decode on {card} (ms; x = dense / ours)\n{hdr}")
    for r in rows:
        line = f"{r['Hq']:>3} {r['N']:>8} | {r['dense_ms']:7.4f} {r['dense_floor_ms']:6.4f}"
        for v in ("minmax", "mean", "index"):
            line += f" | {r[v + '_ms']:7.4f} {r[v + '_floor_ms']:6.4f} {r['dense_ms'] / r[v + '_ms']:5.1f}"
        line += f" | {r['index_score_ms'] * 1e3:.1f}/{r['index_topk_ms'] * 1e3:.1f}/{r['index_attn_ms'] * 1e3:.1f}"
        line += f"  minmax {r['minmax_score_ms'] * 1e3:.1f}/{r['minmax_topk_ms'] * 1e3:.1f}/{r['minmax_attn_ms'] * 1e3:.1f}"
        print(line)
    print("\nmin/max summaries, five launches vs two (fused) vs three (scores, select, attention) vs two with fp8 K/V"
          " (us; /floor = time over its floor)")
    print(f"{'Hq':>3} {'N':>8} | {'5-launch':>8} {'/floor':>6}" + "".join(
        f" | {v:>7} {'/floor':>6} {'x dense':>7} {'select/attn':>12}" for v in ("fused", "three", "fp8")))
    for r in rows:
        line = f"{r['Hq']:>3} {r['N']:>8} | {r['minmax_ms'] * 1e3:8.1f} {r['minmax_ms'] / r['minmax_floor_ms']:6.2f}"
        for v in ("fused", "three", "fp8"):
            if f"{v}_ms" in r:
                line += (f" | {r[v + '_ms'] * 1e3:7.1f} {r[v + '_ms'] / r[v + '_floor_ms']:6.2f} {r['dense_ms'] / r[v + '_ms']:7.1f}"
                         f" {r[v + '_select_ms'] * 1e3:5.1f}/{r[v + '_attn_ms'] * 1e3:5.1f}")
            else:
                line += f" | failed: {r.get(v + '_error', '?')[:40]}"
        print(line)
    print("\nwhole decode step, 1.5B shape, CUDA graph (ms)")
    for s in step:
        print(f"  N={s['N']:>8}: dense {s['dense_ms']:.3f}  msa(minmax) {s['msa_ms']:.3f}  x{s['speedup']:.2f}"
              f"  msa(fused) {s['msa_fused_ms']:.3f}  x{s['speedup_fused']:.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32768,131072,524288,1048576", help="per-layer cache lengths N")
    ap.add_argument("--hq", default="28,64", help="query-head counts of the per-layer rows (Hkv 4, d 128)")
    ap.add_argument("--model-sizes", default="131072,1048576", help="cache lengths of the whole-step model ('' = none)")
    ap.add_argument("--tune", action="store_true", help="sweep launch parameters at 1M first (minutes); default: the "
                    "library's table for this GPU (kernels/launch_configs.py)")
    ap.add_argument("--time-budget", type=float, default=0.0, help="seconds after which no new row starts (0 = none); "
                    "the rest is listed as skipped and the run ends normally")
    ap.add_argument("--plan", action="store_true", help="print the rows a run would measure and the launch parameters, "
                    "then exit (no GPU needed)")
    ap.add_argument("--out", default="", help="JSON result, rewritten after every measured row")
    args = ap.parse_args(argv)
    t0 = time.time()
    steps = plan(args)
    if args.plan:
        gen = launch_configs.generation(DEV) if torch.cuda.is_available() else "hopper"
        print(f"rows: {[f'{kind} Hq={hq} N={n}' if hq else f'{kind} N={n}' for kind, hq, n in steps]}")
        print(f"launch parameters ({'swept by --tune' if args.tune else gen + ' table'}): {launch_configs.TABLES[gen]}")
        return
    if not torch.cuda.is_available():
        raise SystemExit("bench_msa_decode needs a CUDA GPU (--plan and --help work without one)")
    card = torch.cuda.get_device_name()
    bw = copy_bandwidth()
    print(f"{card}: copy bandwidth {bw / 1e12:.2f} TB/s (read + write)", file=sys.stderr)
    lb = LayerBench(Hkv=4, d=128)
    if args.tune:
        cfg, tune_log = tune(lb, bw)
        source = "tuned"
    else:
        cfg, tune_log = launch_configs.table(DEV), []
        source = f"{launch_configs.generation(DEV)} table"
    print(f"launch parameters ({source}): {cfg}", file=sys.stderr)
    res = Results(args.out, t0, card=card, torch=torch.__version__, copy_tb_s=bw / 1e12, config=cfg, config_source=source,
                  tune=tune_log)
    res.save()
    for kind, hq, n in steps:
        elapsed = time.time() - res.t0
        if args.time_budget and elapsed > args.time_budget:
            res.data["skipped"].append({"kind": kind, "Hq": hq, "N": n})
            print(f"  skipped {kind} Hq={hq} N={n}: time budget {args.time_budget:.0f} s spent ({elapsed:.0f} s)", file=sys.stderr)
            continue
        t = time.time()
        if kind == "layer":
            row = lb.run(n, hq, bw, cfg)
            row["seconds"] = time.time() - t
            res.add("per_layer", row)
            print("  " + json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}), file=sys.stderr)
            continue
        dense, msa = model_step_ms(n, "dense", cfg), model_step_ms(n, "msa", cfg)
        try:
            fused = model_step_ms(n, "msa_fused", cfg)
        except Exception as exc:  # recorded, never hidden
            fused = float("nan")
            print(f"  fused model step at N={n} failed: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
        res.add("model_step", {"N": n, "dense_ms": dense, "msa_ms": msa, "speedup": dense / msa, "msa_fused_ms": fused,
                               "speedup_fused": dense / fused, "seconds": time.time() - t})
        print(f"  step {res.data['model_step'][-1]}", file=sys.stderr)
    res.data["complete"] = not res.data["skipped"]
    res.save()
    print_tables(card, res.data["per_layer"], res.data["model_step"])
    if res.data["skipped"]:
        print(f"\nskipped (time budget): {res.data['skipped']}")
    print(json.dumps(res.data))


if __name__ == "__main__":
    main()
