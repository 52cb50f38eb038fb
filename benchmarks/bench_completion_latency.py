"""Inline-completion latency of the bundled model on this machine's CPU: 16 tokens with a ~50k-token repository
cache, as the editor asks for it (the server's FIM windows, a new cursor position in the open file each time).

Prints a table, then one JSON line. Goal (issue: bundled model): p50 <= 500 ms on a 2-core CPU.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo-tokens", type=int, default=50_000)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    engine = Engine(None, device="cpu")
    files = repository(args.repo_tokens, engine)
    t0 = time.perf_counter()
    synced = engine.sync(add=files, drop=[])
    fill_s = time.perf_counter() - t0

    live_name, _, live = files[len(files) // 2]
    lines = live.splitlines(keepends=True)
    cursors = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    step = max(1, len(cursors) // args.runs)
    times, tokens = [], []
    for i in cursors[::step][: args.runs]:
        column = len(lines[i]) - len(lines[i].lstrip())  # at the indentation, the rest of the line after it
        request = build_request(live, i, column, live_name)  # the windows the server sends
        t = time.perf_counter()
        "".join(engine.complete(live_name, request.prefix, request.suffix, max_tokens=args.max_tokens))
        times.append((time.perf_counter() - t) * 1e3)
        tokens.append(engine.last_stats["generated_tokens"])
    times.sort()
    p50 = statistics.median(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(f"{'repository':<28}{synced['tokens']:>10} tokens in {len(files)} files, filled in {fill_s:.1f} s")
    print(f"{'completions':<28}{len(times):>10} x up to {args.max_tokens} tokens "
          f"(mean {statistics.mean(tokens):.1f} generated)")
    print(f"{'latency p50 / p95 (ms)':<28}{p50:>10.0f} / {p95:.0f}   goal p50 <= 500")
    print(json.dumps({"bench": "completion_latency", "card": "cpu", "cpu": platform.processor() or platform.machine(),
                      "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "repo_tokens": synced["tokens"],
                      "files": len(files), "fill_s": round(fill_s, 2), "max_tokens": args.max_tokens,
                      "mean_generated": statistics.mean(tokens), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                      "runs": len(times)}))


if __name__ == "__main__":
    main()
