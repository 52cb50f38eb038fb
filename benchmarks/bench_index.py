"""Indexing benchmark: index the running interpreter's standard library (site-packages and
__pycache__ excluded), then time one-line edits of a ~5,000-line file through update_file +
diagnostics. Prints a table, then one JSON line.

Goals (2-core machine): full index <= 15 s, peak RSS <= 1 GB, edit-to-diagnostics p50 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import sysconfig
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lsp.index import IndexOptions, WorkspaceIndex  # noqa: E402


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(own, children)


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _file_near(index: WorkspaceIndex, lines: int) -> str:
    sized = [(abs((index.text(p) or "").count("\n") - lines), p) for p in index.files]
    return min(sized)[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=sysconfig.get_paths()["stdlib"])
    parser.add_argument("--workers", type=int, default=None, help="parse processes (default: CPU count)")
    parser.add_argument("--edits", type=int, default=30)
    args = parser.parse_args()

    options = IndexOptions(exclude=("site-packages/", "__pycache__/"))
    index = WorkspaceIndex()
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    index.build(args.root, options, workers=args.workers)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
    load = os.getloadavg()[0]
    files = index.files
    total_bytes = sum(len((index.text(p) or "").encode("utf-8")) for p in files)

    path = _file_near(index, 5000)
    original = index.text(path)
    lines = original.split("\n")
    middle = len(lines) // 2
    timings = []
    for i in range(args.edits):
        edited = list(lines)
        edited[middle] = edited[middle] + f"  # edit {i}"
        text = "\n".join(edited) if i % 2 == 0 else original
        t0 = time.perf_counter()
        index.update_file(path, text)
        index.diagnostics(path)
        timings.append((time.perf_counter() - t0) * 1000)
    peak = _peak_rss_mb()

    result = {
        "bench": "index",
        "root": args.root,
        "files": len(files),
        "megabytes": round(total_bytes / 1e6, 2),
        "index_seconds": round(seconds, 2),
        "index_cpu_seconds": round(cpu, 2),
        "load_average_1m": round(load, 2),
        "files_per_s": round(len(files) / seconds, 1),
        "mb_per_s": round(total_bytes / 1e6 / seconds, 2),
        "symbols": index.symbol_count(),
        "import_edges": index.edge_count(),
        "cycles": len(index.import_cycles()),
        "skipped": len(index.skipped),
        "peak_rss_mb": round(peak, 1),
        "edit_file": os.path.relpath(path, args.root),
        "edit_file_lines": len(lines),
        "edit_to_diagnostics_p50_ms": round(statistics.median(timings), 2),
        "edit_to_diagnostics_p95_ms": round(_percentile(timings, 0.95), 2),
        "edits": args.edits,
        "workers": args.workers or os.cpu_count(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    rows = [
        ("files indexed", f"{result['files']}"),
        ("source size", f"{result['megabytes']} MB"),
        ("full index", f"{result['index_seconds']} s  (goal <= 15 s)"),
        ("CPU time (all processes)", f"{result['index_cpu_seconds']} s  (1-min load average {result['load_average_1m']})"),
        ("throughput", f"{result['files_per_s']} files/s, {result['mb_per_s']} MB/s"),
        ("symbols / import edges / cycles", f"{result['symbols']} / {result['import_edges']} / {result['cycles']}"),
        ("skipped files", f"{result['skipped']}"),
        ("peak RSS (max of self, children)", f"{result['peak_rss_mb']} MB  (goal <= 1024 MB)"),
        (f"edit -> diagnostics ({result['edit_file']}, {len(lines)} lines)",
         f"p50 {result['edit_to_diagnostics_p50_ms']} ms, p95 {result['edit_to_diagnostics_p95_ms']} ms  (goal p50 <= 50 ms)"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
