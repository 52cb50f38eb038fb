"""Context parallel on 1 vs 2 GPUs: decode step latency at a fixed repository size, the communication share of a
step, and the largest repository cache that fits.

Random weights in a Hugging Face checkpoint (bench_engine's presets; speed does not depend on them). The repository
KV is filled with random values straight into the pages (speed does not depend on them either; prefilling 1M
tokens would take minutes): each rank fills exactly the files the context-parallel engine assigns to it, then the
engine's sync finds them cached. Decode runs greedy FIM completions with a fresh live file each time.

    python benchmarks/bench_multigpu.py --write-checkpoint DIR --preset 1.5b
    python benchmarks/bench_multigpu.py --model DIR --tokens 1000000 --out one.json             # 1 GPU
    python -m torch.distributed.run --nproc-per-node 2 benchmarks/bench_multigpu.py --model DIR --tokens 1000000 \\
        --out two.json                                                                         # 2 GPUs
    python benchmarks/bench_multigpu.py --report one.json two.json --out benchmarks/results/X.json   # table + JSON
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
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

RESERVE = 4 << 30  # bytes per GPU kept for activations, the tail and workspace when estimating what fits


def repo_files(tokens: int, per_file: int, tok) -> list[tuple[str, str, str]]:
    lines = max(1, int(20 * per_file / len(tok.encode(_code(0, 20)))))
    return [(f"src/m{i:06d}.py", str(i), _code(i, lines)) for i in range(max(1, tokens // per_file))]


def placement(engine: Engine, files, world: int) -> list[int]:
    """The rank the context-parallel engine's sync gives each file (same rule, same token counts)."""
    load, out = [0] * world, []
    for path, _, text in files:
        rank = cp_engine.least_loaded(load)
        load[rank] += len(engine.tok.encode(engine.fim.file_header(path) + text))
        out.append(rank)
    return out


@torch.inference_mode()
def fill_random(engine: Engine, files) -> int:
    """Put `files` into the engine's repository cache with random KV (no prefill); returns pages filled."""
    repo, pool, store, tok = engine.repo, engine.pool, engine.store, engine.tok
    for path, _, text in files:
        repo.files[path] = text
    specs = []
    for path, _, text in files:
        header = repo.header(path)
        specs.append((path, tok.encode(header + text), tok.encode(header), layouts.text_key(path, text)))
    parts = layouts.plan(repo.layout, specs, prefix_len=repo.prefix_len, cap=repo.cap, layout_key=repo.layout_key)
    need = sum((p.n_kept + PAGE - 1) // PAGE for p in parts)
    pool.release(pool.alloc(need))  # grow the pool once
    g = torch.Generator(device=pool.device).manual_seed(0)
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
    for r in range(runs + 1):
        spent.update(wall=0.0, comm=0.0)
        list(engine.complete(f"live/f{time.monotonic_ns()}.py", prefix, suffix, max_tokens=max_tokens))
        _sync_all()
        st = engine.last_stats
        if r == 0:
            continue  # warm-up: kernel compilation, allocator
        ttfts.append(st["ttft_ms"])
        if st["generated_tokens"] > 1:
            steps.append(st["decode_ms"] / (st["generated_tokens"] - 1))
        if timer is not None and spent["wall"]:
            shares.append(spent["comm"] / spent["wall"])
    if timer is not None:
        del engine._run_tail
    out = dict(step_ms=round(statistics.median(steps), 2), ttft_ms=round(statistics.median(ttfts), 1),
               generated=st["generated_tokens"], prompt_tokens=st["prompt_tokens"],
               selected_blocks=st["selected_blocks"], repo_blocks=st["repo_blocks"])
    if shares:
        out["comm_share"] = round(statistics.median(shares), 3)
    return out


def fit(engine: Engine, devices: int) -> dict | None:
    if engine.device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(engine.device)
    weights = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    per_token = engine.pool.bytes_per_page / PAGE
    per_gpu = int((total - weights - RESERVE) / per_token)
    return dict(total_gib=round(total / 2**30, 1), weights_gib=round(weights / 2**30, 2), kv_bytes_per_token=per_token,
                max_tokens_per_gpu=per_gpu, max_repo_tokens=per_gpu * devices,
                peak_reserved_gib=round(torch.cuda.max_memory_reserved(engine.device) / 2**30, 2))


def _card(engine: Engine) -> str:
    return torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else "cpu"


def run(args) -> dict | None:
    opts = dict(top_k_blocks=16)
    if "decode" in inspect.signature(Engine.__init__).parameters:
        opts["decode"] = "plain"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        engine = Engine(args.model, **opts)
        files = repo_files(args.tokens, args.per_file, engine.tok)
        t = time.perf_counter()
        fill_random(engine, files)
        info = engine.sync(files, [])
        fill_s = time.perf_counter() - t
        rows = {"plain": decode_runs(engine, args.runs, args.max_tokens, args.tail_tokens)}
        if "decode" in opts and engine.device.type == "cuda":
            engine.decode = "graph"  # the engine's default on CUDA: one captured graph per step
            try:
                rows["graph"] = decode_runs(engine, args.runs, args.max_tokens, args.tail_tokens)
            except Exception as exc:  # recorded, not hidden: the plain row is the like-for-like baseline
                rows["graph"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        return dict(gpus=1, card=_card(engine), params=engine.info()["params"], tokens=info["tokens"], fill_s=round(fill_s, 1),
                    reused=info["reused_segments"], segments=info["segments"], decode=rows, fit=fit(engine, 1))
    rank = int(os.environ["RANK"])
    if rank == 0:
        engine = cp_engine.start(args.model, opts, timeout_s=600)
    else:
        device = distributed.rank_device(rank, None)
        engine = Engine(args.model, device=device, **opts)
        comm = distributed.Comm.join(rank, world, str(engine.device), timeout_s=600)
    files = repo_files(args.tokens, args.per_file, engine.tok)
    owners = placement(engine, files, world)
    t = time.perf_counter()
    fill_random(engine, [f for f, r in zip(files, owners) if r == rank])
    if rank:
        cp_engine.serve_commands(engine, comm)
        return None
    info = engine.sync(files, [])
    fill_s = time.perf_counter() - t
    rows = {"plain": decode_runs(engine, args.runs, args.max_tokens, args.tail_tokens)}
    engine.shard.timer.enabled = True
    timed = decode_runs(engine, max(1, args.runs // 2), args.max_tokens, args.tail_tokens, timer=engine.shard.timer)
    rows["plain"]["comm_share"] = timed.get("comm_share")
    stats = engine.stats()
    result = dict(gpus=world, card=_card(engine), params=engine.info()["params"], tokens=info["tokens"],
                  fill_s=round(fill_s, 1), reused=info["reused_segments"], segments=info["segments"],
                  ranks=[dict(rank=r["rank"], tokens=r["tokens"], gib=round(r["bytes"] / 2**30, 2)) for r in stats["ranks"]],
                  decode=rows, fit=fit(engine, world))
    engine.close()
    return result


def report(paths: list[str], out: str) -> None:
    results = [json.loads(pathlib.Path(p).read_text()) for p in paths]
    card = results[0]["card"]
    print(f"context parallel, {card}, repository {results[0]['tokens']:,} tokens, model of "
          f"{results[0]['params'] / 1e9:.2f}B parameters (random weights)")
    print(f"{'GPUs':>4} {'decode':>6} {'step ms':>8} {'TTFT ms':>8} {'sel/all blocks':>15} {'comm share':>10} "
          f"{'fits (tokens)':>14}")
    for r in results:
        for mode, row in r["decode"].items():
            if "error" in row:
                print(f"{r['gpus']:>4} {mode:>6} failed: {row['error']}")
                continue
            share = row.get("comm_share")
            print(f"{r['gpus']:>4} {mode:>6} {row['step_ms']:>8} {row['ttft_ms']:>8} "
                  f"{str(row['selected_blocks']) + '/' + str(row['repo_blocks']):>15} "
                  f"{'-' if share is None else f'{100 * share:.1f}%':>10} "
                  f"{r['fit']['max_repo_tokens'] if r['fit'] else '-':>14}")
    line = json.dumps(dict(bench="multigpu", card=card, date=datetime.date.today().isoformat(),
                           torch=torch.__version__, results=results))
    if out:
        pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(out).write_text(line + "\n")
    print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write-checkpoint", metavar="DIR", help="write the random checkpoint and exit")
    ap.add_argument("--preset", default="1.5b")
    ap.add_argument("--model", help="checkpoint directory")
    ap.add_argument("--tokens", type=int, default=1_000_000, help="repository tokens in total")
    ap.add_argument("--per-file", type=int, default=4000, help="approximate tokens per file")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--tail-tokens", type=int, default=1000)
    ap.add_argument("--report", nargs="+", metavar="JSON", help="merge result files into the table and JSON line")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.write_checkpoint:
        write_checkpoint(pathlib.Path(args.write_checkpoint), args.preset)
        return
    if args.report:
        report(args.report, args.out)
        return
    result = run(args)
    if result is not None:
        print(json.dumps(result), flush=True)
        if args.out:
            pathlib.Path(args.out).write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
