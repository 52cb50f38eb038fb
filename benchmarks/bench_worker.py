"""IPC cost of the worker link: handshake, request round trip, cache fill, streamed completion, an edit's resync.

Spawns a real worker (`python -m lsp worker`) through the server's WorkerClient and times what the language server
sees. Without --model it builds the tiny random-weight checkpoint the tests use, so the numbers are dominated by
the socket and process costs rather than the model. Prints a table, then one JSON line.

    python benchmarks/bench_worker.py [--model DIR] [--files 200] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import platform
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lsp.worker_client import WorkerClient, WorkerSettings  # noqa: E402


def synthetic_repository(files: int) -> dict[str, str]:
    return {f"pkg/module_{i}.py": "".join(f"def function_{i}_{j}(value):\n    return value * {j} + {i}\n\n"
                                          for j in range(12)) for i in range(files)}


async def run(model: str, files: int, rounds: int) -> dict:
    client = WorkerClient(WorkerSettings(model=model))
    started = time.perf_counter()
    client.start()
    if not await client.wait_ready(300):
        raise SystemExit(f"worker did not start: {client.message}")
    ready_s = time.perf_counter() - started
    try:
        round_trips = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            await client.stats()
            round_trips.append((time.perf_counter() - t0) * 1e3)
        repo = synthetic_repository(files)
        t0 = time.perf_counter()
        client.set_files(repo)
        assert await client.wait_synced(600)
        fill_s = time.perf_counter() - t0
        tokens = client.cache["tokens"]
        first, totals, pieces = [], [], 0
        for _ in range(10):
            t0 = time.perf_counter()
            stream = await client.complete(path="pkg/new.py", prefix="def main():\n    ", suffix="\n",
                                           max_tokens=32)
            seen_first = False
            async for _piece in stream:
                pieces += 1
                if not seen_first:
                    first.append((time.perf_counter() - t0) * 1e3)
                    seen_first = True
            totals.append((time.perf_counter() - t0) * 1e3)
        sent_before = client.texts_sent
        t0 = time.perf_counter()
        client.update_file("pkg/module_0.py", repo["pkg/module_0.py"] + "\nEXTRA = 1\n")
        assert await client.wait_synced(60)
        edit_ms = (time.perf_counter() - t0) * 1e3
        return {
            "worker_ready_s": round(ready_s, 2), "round_trip_ms_p50": round(statistics.median(round_trips), 3),
            "round_trip_ms_p90": round(statistics.quantiles(round_trips, n=10)[-1], 3), "files": files,
            "fill_s": round(fill_s, 2), "fill_tokens": tokens, "fill_tokens_per_s": round(tokens / fill_s),
            "first_piece_ms_p50": round(statistics.median(first), 1) if first else None,
            "completion_ms_p50": round(statistics.median(totals), 1), "pieces": pieces,
            "edit_resync_ms": round(edit_ms, 1), "edit_texts_sent": client.texts_sent - sent_before,
        }
    finally:
        await client.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: a tiny random model built now)")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    model = args.model
    if model is None:
        from tests.worker.conftest import build_tiny_model

        model = str(build_tiny_model(pathlib.Path(tempfile.mkdtemp()) / "tiny"))
    result = asyncio.run(run(model, args.files, args.rounds))
    result.update(model=model if args.model else "tiny-random-qwen2", machine=platform.machine(),
                  python=platform.python_version())
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
