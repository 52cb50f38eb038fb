"""Engine decode speed before and after the fixed-shape CUDA-graph step: tokens/s and ms per step of
Engine.complete with decode="plain" (each token through the general forward) and decode="graph", sparse MSA and
dense attention, at one or more repository sizes, plus the GPU time of one graph replay.

Random weights (speed does not depend on them), checkpoint written by bench_engine.write_checkpoint. The same live
file is completed repeatedly so its prompt is prefilled once per (size, attention) and the timings are decode.
Prints a table and ends with one JSON line; --out also writes that JSON (rewritten after every size).

    python benchmarks/bench_decode_graph.py --repo-tokens 100000,1000000 --out benchmarks/results/x.json   # GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_engine import _code, synth_repo, write_checkpoint  # noqa: E402
from inference.engine import Engine  # noqa: E402

LIVE = "live/current.py"


def decode_rates(engine: Engine, prefix: str, suffix: str, runs: int, max_tokens: int) -> dict:
    """Median decode ms per step and tokens/s over `runs` completions (the prompt's KV reused between them)."""
    ms = []
    for _ in range(runs):
        "".join(engine.complete(LIVE, prefix, suffix, max_tokens=max_tokens))
        st = engine.last_stats
        if st["generated_tokens"] > 1:
            ms.append(st["decode_ms"] / (st["generated_tokens"] - 1))
    step = statistics.median(ms) if ms else None
    return dict(ms_per_step=step and round(step, 3), tok_s=step and round(1e3 / step, 1), generated=st["generated_tokens"],
                selected_blocks=st["selected_blocks"], repo_blocks=st["repo_blocks"], ttft_ms=round(st["ttft_ms"], 1))


def replay_ms(engine: Engine, replays: int = 50) -> float:
    """GPU time of one replay of the captured step (median of `replays`, CUDA events)."""
    graph = engine._decoder.graph
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return round(statistics.median(times), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="1.5b")
    ap.add_argument("--repo-tokens", default="100000,1000000", help="comma-separated sizes, ascending")
    ap.add_argument("--tail-tokens", type=int, default=1000)
    ap.add_argument("--graph-tokens", type=int, default=64)
    ap.add_argument("--plain-tokens", type=int, default=16)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--device", default="cuda", help="cpu runs the fixed-shape step uncaptured (a smoke test)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        write_checkpoint(pathlib.Path(tmp) / args.preset, args.preset)
        engine = Engine(str(pathlib.Path(tmp) / args.preset), device=args.device, decode="plain")
    cuda = engine.device.type == "cuda"
    card = torch.cuda.get_device_name(engine.device) if cuda else "cpu"
    fast = "graph" if cuda else "static"
    body = _code(999, 200)
    cut = len(engine.tok.decode(engine.tok.encode(body)[: args.tail_tokens]))
    prefix, suffix = body[:cut], body[cut : cut + 400]
    result = dict(bench="decode_graph", card=card, date=datetime.date.today().isoformat(), torch=torch.__version__,
                  preset=args.preset, dtype=str(engine.dtype), top_k_blocks=engine.top_k, rows=[])
    print(f"device {card}, preset {args.preset}, dtype {engine.dtype}", flush=True)
    print(f"{'repo tokens':>12}{'attention':>10}{'decode':>8}{'ms/step':>10}{'tok/s':>9}{'replay ms':>11}{'blocks':>14}",
          flush=True)
    for size in (int(s) for s in args.repo_tokens.split(",")):
        t = time.perf_counter()
        info = engine.sync(synth_repo(engine, size), [])
        if cuda:
            torch.cuda.synchronize()
        sync_s = time.perf_counter() - t
        for attention in ("sparse", "dense"):
            engine.attention = attention
            engine.decode = "plain"
            "".join(engine.complete(LIVE, prefix, suffix, max_tokens=4))  # prompt prefill, warm-up
            for decode, tokens in (("plain", args.plain_tokens), (fast, args.graph_tokens)):
                engine.decode = decode
                if decode == fast:
                    "".join(engine.complete(LIVE, prefix, suffix, max_tokens=4))  # capture
                row = dict(repo_tokens=info["tokens"], sync_s=round(sync_s, 1), attention=attention, decode=decode,
                           **decode_rates(engine, prefix, suffix, args.runs, tokens))
                row["replay_ms"] = replay_ms(engine) if decode == "graph" else None
                result["rows"].append(row)
                print(f"{row['repo_tokens']:>12}{attention:>10}{decode:>8}{str(row['ms_per_step']):>10}"
                      f"{str(row['tok_s']):>9}{str(row['replay_ms']):>11}"
                      f"{str(row['selected_blocks']) + '/' + str(row['repo_blocks']):>14}", flush=True)
        result["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None
        if args.out:
            pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(args.out).write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
