"""Profiles decode steps of bench_engine's model with torch.profiler and prints the ops that cost the most host
and device time (a diagnostic beside bench_engine.py; prints a table and one JSON line)."""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import bench_engine  # noqa: E402
from inference.engine import Engine  # noqa: E402


def main() -> None:
    preset = sys.argv[1] if len(sys.argv) > 1 else "1.5b"
    repo_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    with tempfile.TemporaryDirectory() as tmp:
        bench_engine.write_checkpoint(pathlib.Path(tmp) / preset, preset)
        engine = Engine(str(pathlib.Path(tmp) / preset))
    engine.sync(bench_engine.synth_repo(engine, repo_tokens), [])
    body = bench_engine._code(7, 40)
    list(engine.complete("live.py", body[:2000], "", max_tokens=8))  # warm-up
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    t = time.perf_counter()
    with profile(activities=acts) as prof:
        list(engine.complete("live2.py", body[:2000], "", max_tokens=16))
    wall = time.perf_counter() - t
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    if torch.cuda.is_available():
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15))
    print(json.dumps(dict(bench="profile_decode", wall_s=wall, stats=engine.last_stats)))


if __name__ == "__main__":
    main()
