"""Inline-completion latency of the bundled model on this machine's CPU: 16 tokens with a ~50k-token repository
cache, as the editor asks for it (the server's FIM windows), in two scenarios:

- cold: a new cursor position in the open file each time, the tail KV dropped before each request;
- typing: a line retyped character by character at a few places of the open file, a completion after each
  keystroke (the tail KV of the previous request is reused up to the first changed token); the edited file is
  synced into the cache when the typist moves on, as the server does after BUFFER_SYNC_S of quiet (sync time
  reported apart: it is not on a completion's path).

Prints a table, then one JSON line (with the load average, as other work may share the cores).
Goal (issue: bundled model): p50 <= 500 ms on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import platform
import statistics
import sysconfig
import time

import torch

from inference.engine import Engine
from lsp.completion import build_request


def repository(tokens_wanted: int, engine: Engine) -> list[tuple[str, str, str]]:
    """Files of the interpreter's standard library (present on every machine), up to about `tokens_wanted`."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"]) / "json"
    files, total = [], 0
    for path in sorted(root.parent.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        n = len(engine.tok.encode(text))
        if n > 3000:
            continue
        files.append((path.name, hashlib.sha256(text.encode()).hexdigest(), text))
        total += n
        if total >= tokens_wanted:
            break
    return files


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def complete(engine: Engine, text: str, line: int, column: int, path: str, max_tokens: int) -> dict:
    request = build_request(text, line, column, path)  # the windows the server sends
    t = time.perf_counter()
    "".join(engine.complete(path, request.prefix, request.suffix, max_tokens=max_tokens, stop=request.stop))
    return dict(engine.last_stats, ms=(time.perf_counter() - t) * 1e3)


def cold(engine: Engine, live: str, path: str, runs: int, max_tokens: int) -> list[dict]:
    lines = live.splitlines(keepends=True)
    cursors = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    step = max(1, len(cursors) // runs)
    out = []
    for i in cursors[::step][:runs]:
        column = len(lines[i]) - len(lines[i].lstrip())  # at the indentation, the rest of the line after it
        engine.forget_tail()  # cold: nothing of an earlier request reused (nearby cursors would share a prefix)
        out.append(complete(engine, live, i, column, path, max_tokens))
    return out


def typing(engine: Engine, live: str, path: str, places: int, chars: int, max_tokens: int) -> tuple[list[dict], list[float]]:
    """At `places` lines spread over the file: clear the line after its indentation, then type it back, one
    character and one completion at a time; the edit is synced before moving to the next place."""
    lines = live.splitlines(keepends=True)
    cursors = [i for i, line in enumerate(lines) if len(line.strip()) >= 12 and not line.lstrip().startswith("#")]
    out, syncs = [], []
    for i in cursors[len(cursors) // (places + 1) :: max(1, len(cursors) // (places + 1))][:places]:
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        typed = lines[i].strip()[:chars]
        for n in range(1, len(typed) + 1):
            edited = lines[:i] + [indent + typed[:n] + "\n"] + lines[i + 1 :]
            out.append(complete(engine, "".join(edited), i, len(indent) + n, path, max_tokens))
        lines = edited
        t = time.perf_counter()
        text = "".join(lines)
        engine.sync(add=[(path, hashlib.sha256(text.encode()).hexdigest(), text)], drop=[])
        syncs.append((time.perf_counter() - t) * 1e3)
    return out, syncs


def summary(results: list[dict]) -> dict:
    p50, p95 = percentiles([r["ms"] for r in results])
    return dict(runs=len(results), p50_ms=round(p50, 1), p95_ms=round(p95, 1),
                mean_prefilled=round(statistics.mean(r["prefilled_tokens"] for r in results), 1),
                mean_reused=round(statistics.mean(r["reused_tail_tokens"] for r in results), 1),
                mean_prompt=round(statistics.mean(r["prompt_tokens"] for r in results), 1),
                mean_generated=round(statistics.mean(r["generated_tokens"] for r in results), 1),
                ttft_p50_ms=round(statistics.median(r["ttft_ms"] or r["ms"] for r in results), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo-tokens", type=int, default=50_000)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--runs", type=int, default=20, help="cold completions")
    parser.add_argument("--places", type=int, default=4, help="places retyped in the typing scenario")
    parser.add_argument("--chars", type=int, default=20, help="characters typed at each place")
    parser.add_argument("--live-window", default="", metavar="PREFIX,SUFFIX",
                        help="live window in tokens (default: the engine's for the device)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    window = tuple(int(x) for x in args.live_window.split(",")) if args.live_window else None
    engine = Engine(None, device="cpu", live_window=window)
    files = repository(args.repo_tokens, engine)
    t0 = time.perf_counter()
    synced = engine.sync(add=files, drop=[])
    fill_s = time.perf_counter() - t0
    live_name, _, live = files[len(files) // 2]
    complete(engine, live, 3, 0, live_name, 1)  # warm-up (first-call allocations, the view's contiguous copies)
    scenarios = {"cold": summary(cold(engine, live, live_name, args.runs, args.max_tokens))}
    typed, syncs = typing(engine, live, live_name, args.places, args.chars, args.max_tokens)
    scenarios["typing"] = summary(typed)
    scenarios["typing"]["sync_ms_mean"] = round(statistics.mean(syncs), 1)
    load_after = os.getloadavg()

    print(f"{'repository':<28}{synced['tokens']:>10} tokens in {len(files)} files, filled in {fill_s:.1f} s")
    print(f"{'live window (tokens)':<28}{str(tuple(engine.live_window)):>10}  (prefix, suffix)")
    print(f"{'scenario':<10}{'runs':>6}{'p50 ms':>9}{'p95 ms':>9}{'ttft p50':>10}{'prompt':>8}{'prefilled':>10}"
          f"{'reused':>8}{'generated':>10}")
    for name, r in scenarios.items():
        print(f"{name:<10}{r['runs']:>6}{r['p50_ms']:>9.0f}{r['p95_ms']:>9.0f}{r['ttft_p50_ms']:>10.0f}"
              f"{r['mean_prompt']:>8.0f}{r['mean_prefilled']:>10.0f}{r['mean_reused']:>8.0f}{r['mean_generated']:>10.1f}")
    print(f"goal p50 <= 500 ms; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"(typing: live file synced between places, {scenarios['typing']['sync_ms_mean']:.0f} ms each)")
    print(json.dumps({"bench": "completion_latency", "card": "cpu", "cpu": platform.processor() or platform.machine(),
                      "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "repo_tokens": synced["tokens"],
                      "files": len(files), "fill_s": round(fill_s, 2), "max_tokens": args.max_tokens,
                      "live_window": list(engine.live_window), "scenarios": scenarios,
                      "load_avg_before": [round(x, 2) for x in load_before],
                      "load_avg_after": [round(x, 2) for x in load_after]}))


if __name__ == "__main__":
    main()
