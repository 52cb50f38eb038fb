"""Context parallel on 1 vs 2 GPUs: decode step latency at a fixed repository size (plain forward and CUDA-graph
step), the communication share of a step, and the largest repository cache that fits, filled and served.

Random weights in a Hugging Face checkpoint (bench_engine's presets; speed does not depend on them). The repository
KV is filled with random values straight into the pages (speed does not depend on them either; prefilling millions
of tokens would take minutes): each rank fills exactly the files the context-parallel engine assigns to it, then the
engine's sync finds them cached. Decode runs greedy FIM completions with a fresh live file each time.

Phase "base" (--tokens, ~1M): decode modes "plain" (every token through the general forward), "graph" (the
fixed-shape step in a CUDA graph) and, on 2+ GPUs, "graph-local": the same graph with each all-gather replaced by a
local copy of identical shape (benchmark-only, wrong tokens), so comm share = 1 - step(graph-local) / step(graph).
The plain row's comm_share is the synchronized wall time inside collectives over the step's time.
Phase "fit" (--fit): each GPU's page pool is sized once, before anything is filled, to
    (GPU memory - weights - --reserve-gib) / (KV bytes per token + --headroom-per-token)
tokens (the headroom covers a prompt's dense-layer gathers, which grow with the cache), files are added while every
GPU's cached pages stay within 96% of its pool (the rest holds live tails), and completions run through the
CUDA-graph step at that size.

    python benchmarks/bench_multigpu.py --write-checkpoint DIR --preset 1.5b
    python benchmarks/bench_multigpu.py --model DIR --fit --out one.json                                # 1 GPU
    python -m torch.distributed.run --nproc-per-node 2 benchmarks/bench_multigpu.py --model DIR --fit --out two.json
    python benchmarks/bench_multigpu.py --report one.json two.json --out benchmarks/results/X.json   # table + JSON
(benchmarks/gpu/multigpu.sh runs all of it.) Each run rewrites --out after every phase, so a later failure keeps the
numbers already taken; a failing mode is recorded as {"error": ...}, never left out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import pathlib
import statistics
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_engine import _code, write_checkpoint  # noqa: E402
from inference import cp_engine, distributed, layouts  # noqa: E402
from inference.engine import Engine  # noqa: E402
from inference.kv_cache import PAGE, Segment  # noqa: E402

log = logging.getLogger("bench_multigpu")


def _parts(engine: Engine, files) -> list:
    """The cache parts (segments) the engine's sync makes of `files`, each with its real token count."""
    repo, tok = engine.repo, engine.tok
    specs = []
    for path, _, text in files:
        header = repo.header(path)
        specs.append((path, tok.encode(header + text), tok.encode(header), layouts.text_key(path, text)))
    return layouts.plan(repo.layout, specs, prefix_len=repo.prefix_len, cap=repo.cap, layout_key=repo.layout_key)


def _pages(parts) -> int:
    return sum((p.n_kept + PAGE - 1) // PAGE for p in parts)


def repo_files(engine: Engine, base_tokens: int, per_file: int, world: int, fit_pages: int | None = None):
    """Benchmark files of about `per_file` tokens, with the rank the context-parallel engine's sync gives each (its
    least-loaded rule on the same token counts). The first `n_base` files hold at least `base_tokens` tokens (the
    base phase); with `fit_pages`, more files follow while every rank's cached pages stay within it (the fit phase).
    Sizes are counted as the files really encode and split into pages. Returns (files, owners, n_base)."""
    lines = max(1, int(20 * per_file / len(engine.tok.encode(_code(0, 20)))))
    files, owners, n_base = [], [], None
    load, pages = [0] * world, [0] * world
    while True:
        if n_base is None and sum(load) >= base_tokens:
            n_base = len(files)
            if fit_pages is None:
                return files, owners, n_base
        f = (f"src/m{len(files):06d}.py", str(len(files)), _code(len(files), lines))
        rank = cp_engine.least_loaded(load) if world > 1 else 0
        n_pages = _pages(_parts(engine, [f]))
        if n_base is not None and pages[rank] + n_pages > fit_pages:
            return files, owners, n_base
        load[rank] += len(engine.tok.encode(engine.fim.file_header(f[0], f[2]) + f[2]))
        pages[rank] += n_pages
        files.append(f)
        owners.append(rank)


@torch.inference_mode()
def fill_random(engine: Engine, files, grow: bool = True) -> int:
    """Put `files` into the engine's repository cache with random KV (no prefill); returns pages filled. Without
    `grow` a pool too small is an error (growing copies the whole pool, which cannot fit at the fit size)."""
    repo, pool, store = engine.repo, engine.pool, engine.store
    for path, _, text in files:
        repo.files[path] = text
    parts = _parts(engine, files)
    need = _pages(parts)
    if need > len(pool.free) and not grow:
        raise RuntimeError(f"the fit phase needs {need} pages, the pre-sized pool has {len(pool.free)} free")
    if need > len(pool.free):
        log.info("page pool grows to hold %d more pages", need)
        pool.release(pool.alloc(need))  # grow once
    g = torch.Generator(device=pool.device).manual_seed(len(store.segments))
    for part in parts:
        n = (part.n_kept + PAGE - 1) // PAGE
        pages = pool.alloc(n)
        ids = torch.tensor(pages, device=pool.device)
        for buf in (pool.k, pool.v, pool.index_k):
            if buf is not None:
                shape = (buf.shape[0], n, *buf.shape[2:])
                buf[:, ids] = torch.randn(shape, generator=g, device=pool.device, dtype=pool.dtype)
        pool.seal(pages, part.n_kept)
        store.add(Segment(part.key, part.path, part.n_kept, part.start_pos + part.keep_from, pages=pages))
    return need


def fit_plan(engine: Engine, world: int, args) -> dict:
    """The page pool each GPU gets and the repository size of the fit phase. From the card's total memory and the
    weights only, so every rank computes the same figures without talking to the others."""
    if args.fit_memory_gib:
        total = int(args.fit_memory_gib * 2**30)
    else:
        total = torch.cuda.get_device_properties(engine.device).total_memory
    weights = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    per_token = engine.pool.bytes_per_page / PAGE
    pool_tokens = int((total - weights - args.reserve_gib * 2**30) / (per_token + args.headroom_per_token)) // PAGE * PAGE
    return dict(total_gib=round(total / 2**30, 1), weights_gib=round(weights / 2**30, 2), kv_bytes_per_token=per_token,
                reserve_gib=args.reserve_gib, headroom_bytes_per_token=args.headroom_per_token,
                pool_tokens_per_gpu=pool_tokens, pool_gib_per_gpu=round(pool_tokens * per_token / 2**30, 2),
                fill_share=0.96)


def _sync_all():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def decode_runs(engine: Engine, runs: int, max_tokens: int, tail_tokens: int, timer=None) -> dict:
    body = _code(999, 400)
    cut = len(engine.tok.decode(engine.tok.encode(body)[:tail_tokens]))
    prefix, suffix = body[:cut], body[cut : cut + 400]
    steps, ttfts, shares = [], [], []
    spent = {"wall": 0.0, "comm": 0.0}
    if timer is not None:  # time each single-token step (synchronized) and the collectives inside it
        run_tail = engine._run_tail

        def timed_step(new_ids, start, repo_attn, logits):
            if len(new_ids) != 1:
                return run_tail(new_ids, start, repo_attn, logits)
            _sync_all()
            t0, c0 = time.perf_counter(), timer.seconds
            out = run_tail(new_ids, start, repo_attn, logits)
            _sync_all()
            spent["wall"] += time.perf_counter() - t0
            spent["comm"] += timer.seconds - c0
            return out

        engine._run_tail = timed_step
    try:
        for r in range(runs + 1):
            spent.update(wall=0.0, comm=0.0)
            list(engine.complete(f"live/f{time.monotonic_ns()}.py", prefix, suffix, max_tokens=max_tokens))
            _sync_all()
            st = engine.last_stats
            if r == 0:
                continue  # warm-up: kernel compilation, allocator, graph capture
            ttfts.append(st["ttft_ms"])
            if st["generated_tokens"] > 1:
                steps.append(st["decode_ms"] / (st["generated_tokens"] - 1))
            if timer is not None and spent["wall"]:
                shares.append(spent["comm"] / spent["wall"])
    finally:
        if timer is not None:
            del engine._run_tail
    out = dict(step_ms=round(statistics.median(steps), 2) if steps else None, ttft_ms=round(statistics.median(ttfts), 1),
               generated=st["generated_tokens"], prompt_tokens=st["prompt_tokens"],
               selected_blocks=st["selected_blocks"], repo_blocks=st["repo_blocks"])
    if shares:
        out["comm_share"] = round(statistics.median(shares), 3)
    return out


def measure(engine: Engine, mode: str, args, runs: int) -> dict:
    """One decode mode; an exception is recorded in the row (a broken rank group is re-raised by the caller)."""
    cp = isinstance(engine, cp_engine.ContextParallelEngine)
    engine.decode = mode.removesuffix("-local")
    if cp:
        engine.collectives = "local" if mode.endswith("-local") else "nccl"
    try:
        row = decode_runs(engine, runs, args.max_tokens, args.tail_tokens)
        if mode == "plain" and cp:
            engine.shard.timer.enabled = True
            try:
                timed = decode_runs(engine, 1, args.max_tokens, args.tail_tokens, timer=engine.shard.timer)
            finally:
                engine.shard.timer.enabled = False
            row["comm_share"] = timed.get("comm_share")
    except Exception as exc:
        log.exception("decode mode %s failed", mode)
        row = {"error": f"{type(exc).__name__}: {exc}"[:400]}
    finally:
        if cp:
            engine.collectives = "nccl"
    if cp and mode != "plain":
        row["decode"] = engine.decode_state() if engine.failure is None else None
    return row


def _card(engine: Engine) -> str:
    return torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else "cpu"


def _gib(n) -> float | None:
    return None if n is None else round(n / 2**30, 2)


def _write(result: dict, out: str) -> None:
    print(json.dumps(result), flush=True)
    if out:
        pathlib.Path(out).write_text(json.dumps(result) + "\n")


def _ranks(engine) -> list[dict]:
    if not isinstance(engine, cp_engine.ContextParallelEngine):
        st, dev = engine.stats(), engine.device
        peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
        return [dict(rank=0, tokens=st["tokens"], kv_gib=_gib(st["bytes"]), peak_gib=_gib(peak))]
    return [dict(rank=r["rank"], tokens=r["tokens"], kv_gib=_gib(r["bytes"]), peak_gib=_gib(r.get("peak_device_bytes")))
            for r in engine.stats()["ranks"]]


def run(args) -> dict | None:
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    opts = dict(top_k_blocks=16, decode="plain")
    comm = None
    if world == 1:
        engine = Engine(args.model, **opts)
    elif rank == 0:
        engine = cp_engine.start(args.model, opts, timeout_s=args.rank_timeout)
    else:
        engine = Engine(args.model, device=distributed.rank_device(rank, None), **opts)
        comm = distributed.Comm.join(rank, world, str(engine.device), timeout_s=args.rank_timeout)
    plan = fit_plan(engine, world, args) if args.fit and (engine.device.type == "cuda" or args.fit_memory_gib) else None
    if plan:  # the pool is sized once, before anything is stored: growing it later would copy it
        engine.pool.release(engine.pool.alloc(max(0, plan["pool_tokens_per_gpu"] // PAGE - engine.pool.used_pages)))
    files, owners, n_base = repo_files(engine, args.tokens, args.per_file, world,
                                       int(plan["fill_share"] * plan["pool_tokens_per_gpu"]) // PAGE if plan else None)
    mine = [[f for i, (f, r) in enumerate(zip(files, owners)) if r == rank and (i < n_base) == base]
            for base in (True, False)]
    t = time.perf_counter()
    fill_random(engine, mine[0])
    if comm is not None:  # a follower: rank 0's commands from here on
        cp_engine.serve_commands(engine, comm, {"bench-fill": lambda e, _: fill_random(e, mine[1], grow=False)})
        return None
    info = engine.sync(files[:n_base], [])
    _sync_all()
    result = dict(gpus=world, card=_card(engine), torch=torch.__version__, params=engine.info()["params"], tokens=info["tokens"],
                  fill_s=round(time.perf_counter() - t, 1), reused=info["reused_segments"], segments=info["segments"],
                  ranks=_ranks(engine), decode={})
    fixed = "graph" if engine.device.type == "cuda" else "static"  # CPU: a smoke run of the same code
    modes = ["plain", fixed] + ([fixed + "-local"] if world > 1 else [])
    for mode in modes:
        result["decode"][mode] = measure(engine, mode, args, max(1, args.runs - 1) if "-local" in mode else args.runs)
        _write(result, args.out)
        if getattr(engine, "failure", None):
            break
    g, l = result["decode"].get(fixed, {}), result["decode"].get(fixed + "-local", {})
    if g.get("step_ms") and l.get("step_ms"):
        result["graph_comm_share"] = round(1 - l["step_ms"] / g["step_ms"], 3)
    if plan and not getattr(engine, "failure", None):
        result["fit"] = fit = dict(plan)
        try:
            t = time.perf_counter()
            if world > 1:
                engine.command("bench-fill", None, lambda: fill_random(engine, mine[1], grow=False))
            else:
                fill_random(engine, mine[1], grow=False)
            info = engine.sync(files, [])
            _sync_all()
            fit.update(filled_tokens=info["tokens"], fill_s=round(time.perf_counter() - t, 1))
            fit["decode"] = measure(engine, fixed, args, 1)
            fit["ranks"] = _ranks(engine)
        except Exception as exc:
            log.exception("fit phase failed")
            fit["error"] = f"{type(exc).__name__}: {exc}"[:400]
        _write(result, args.out)
    if world > 1:
        failure = engine.failure
        engine.close()
        if failure:  # the other ranks may hang in a collective: end with an error so that torchrun stops them
            log.error("rank group broken: %s", failure)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3 if failure else 0)  # results are written; NCCL's teardown may still block in a thread
    return result


def report(paths: list[str], out: str) -> None:
    results = [json.loads(pathlib.Path(p).read_text()) for p in paths]
    card = results[0]["card"]
    print(f"context parallel, {card}, model of {results[0]['params'] / 1e9:.2f}B parameters (random weights)")
    print(f"{'GPUs':>4} {'phase':>5} {'repo tokens':>12} {'decode':>11} {'step ms':>8} {'TTFT ms':>8} "
          f"{'comm share':>10} {'KV GiB/GPU':>10} {'peak GiB':>8}")
    for r in results:
        phases = [("base", r["tokens"], r["decode"], r["ranks"])]
        if r.get("fit"):
            f = r["fit"]
            mode = "graph" if r["card"] != "cpu" else "static"
            phases.append(("fit", f.get("filled_tokens", 0), {mode: f.get("decode", {"error": f.get("error")})},
                           f.get("ranks", [])))
        for phase, tokens, rows, ranks in phases:
            kv = max((x["kv_gib"] or 0 for x in ranks), default=0)
            peak = max((x["peak_gib"] or 0 for x in ranks), default=0)
            for mode, row in rows.items():
                head = f"{r['gpus']:>4} {phase:>5} {tokens:>12,} {mode:>11}"
                if "error" in row:
                    print(f"{head} failed: {row['error']}")
                    continue
                share = row.get("comm_share")
                if mode in ("graph", "static") and phase == "base" and r.get("graph_comm_share") is not None:
                    share = r["graph_comm_share"]
                path = (row.get("decode") or {}).get("path", mode.split("-")[0])
                note = "" if path == mode.split("-")[0] else f"  (ran {path}: {row['decode']['fallback']})"
                share = "-" if share is None else f"{100 * share:.1f}%"
                print(f"{head} {row['step_ms']:>8} {row['ttft_ms']:>8} {share:>10} {kv:>10} {peak:>8}{note}")
    line = json.dumps(dict(bench="multigpu", card=card, date=datetime.date.today().isoformat(),
                           torch=results[0].get("torch"), results=results))
    if out:
        pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(out).write_text(line + "\n")
    print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write-checkpoint", metavar="DIR", help="write the random checkpoint and exit")
    ap.add_argument("--preset", default="1.5b")
    ap.add_argument("--model", help="checkpoint directory")
    ap.add_argument("--tokens", type=int, default=1_000_000, help="repository tokens in total, base phase")
    ap.add_argument("--per-file", type=int, default=4000, help="approximate tokens per file")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--tail-tokens", type=int, default=1000)
    ap.add_argument("--fit", action="store_true", help="then fill each GPU's pool and decode at that size")
    ap.add_argument("--reserve-gib", type=float, default=3.0, help="fit: GPU memory kept besides weights and KV")
    ap.add_argument("--headroom-per-token", type=int, default=8192, help="fit: bytes per cached token kept free")
    ap.add_argument("--fit-memory-gib", type=float, help="fit: pretend each device has this much memory (CPU tests)")
    ap.add_argument("--rank-timeout", type=float, default=300.0)
    ap.add_argument("--report", nargs="+", metavar="JSON", help="merge result files into the table and JSON line")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(levelname)s %(name)s %(message)s")
    if args.write_checkpoint:
        write_checkpoint(pathlib.Path(args.write_checkpoint), args.preset)
        return
    if args.report:
        report(args.report, args.out)
        return
    run(args)


if __name__ == "__main__":
    main()
