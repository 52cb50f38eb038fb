"""Edit-to-diagnostics latency through the real server: a one-line didChange in a 5,000-line Python
file until its textDocument/publishDiagnostics for that version arrives (stdio, real index).

Runs with msa.diagnostics.debounceMs = 0 (the server's own cost) and = 200 (the default, what a
user sees), with the model features off (no worker process competing for the CPU). Prints a table,
then one JSON line.

    .venv/bin/python benchmarks/bench_lsp_latency.py [--edits 20] [--lines 5000] [--tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import shutil
import statistics
import sys
import tempfile
import time

from lsprotocol import types
from pytest_lsp import client_capabilities
from pytest_lsp.client import make_test_lsp_client

ROOT = pathlib.Path(__file__).resolve().parent.parent


def make_workspace(directory: pathlib.Path, lines: int) -> pathlib.Path:
    pkg = directory / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("def helper(x):\n    return x + 1\n")
    body = ["from pkg.helpers import helper", ""]
    while len(body) < lines - 4:
        n = len(body)
        body += [f"def function_{n}(value):", f"    total = helper(value) + {n}", "    return total", ""]
    big = pkg / "big.py"
    big.write_text("\n".join(body[:lines]) + "\n")
    return big


async def measure(big: pathlib.Path, debounce_ms: int, edits: int) -> list[float]:
    client = make_test_lsp_client()
    published: dict[int, asyncio.Future] = {}
    features = client.protocol.fm.features
    record = features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]

    def on_publish(params: types.PublishDiagnosticsParams):
        record(params)
        if params.uri == big.as_uri() and params.version in published and not published[params.version].done():
            published[params.version].set_result(time.perf_counter())

    features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = on_publish
    await client.start_io(sys.executable, "-m", "lsp", "serve", "--log-level", "WARNING", cwd=str(ROOT))
    ready = asyncio.Event()

    @client.feature("msa/status")
    def on_status(params):
        if params.index.state == "ready":
            ready.set()

    root = big.parent.parent
    await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=root.as_uri(),
        initialization_options={"msa": {"diagnostics": {"debounceMs": debounce_ms},
                                        "inlineCompletion": {"enable": False}}}))  # no worker: diagnostics only
    await asyncio.wait_for(ready.wait(), 600)
    loop = asyncio.get_running_loop()
    text = big.read_text()
    published[1] = loop.create_future()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=big.as_uri(), language_id="python", version=1, text=text)))
    await asyncio.wait_for(published[1], 30)
    samples = []
    line = 2500 + 1  # the "    total = helper(value) + N" line of a function near the middle
    for i in range(edits):
        version = i + 2
        published[version] = loop.create_future()
        new_line = f"    total = helper(value) + {i}" if i % 2 else "    total = helper(value +"  # alternate: broken / fixed
        start = time.perf_counter()
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=big.as_uri(), version=version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(line=line, character=0), end=types.Position(line=line + 1, character=0)),
                text=new_line + "\n")]))
        end = await asyncio.wait_for(published[version], 30)
        samples.append((end - start) * 1000)
    await client.shutdown_session()
    await client.stop()
    return samples


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 2), "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
            "min_ms": round(ordered[0], 2), "max_ms": round(ordered[-1], 2), "n": len(ordered)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--tree", help="copy this directory into the workspace too (e.g. the standard library)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        big = make_workspace(pathlib.Path(tmp), args.lines)
        files = 3
        if args.tree:
            shutil.copytree(args.tree, pathlib.Path(tmp) / "tree", symlinks=True, ignore_dangling_symlinks=True,
                            ignore=shutil.ignore_patterns("site-packages", "__pycache__"))
            files += sum(1 for _ in (pathlib.Path(tmp) / "tree").rglob("*.py"))
        for debounce in (0, 200):
            results[debounce] = summary(await measure(big, debounce, args.edits))
    device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    load = round(os.getloadavg()[0], 2)
    print(f"edit -> publishDiagnostics, {args.lines}-line file in a workspace of ~{files} Python files, "
          f"{args.edits} one-line edits ({device}, 1-min load {load})")
    print(f"{'debounceMs':>10} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} {'max ms':>8}")
    for debounce, row in results.items():
        print(f"{debounce:>10} {row['p50_ms']:>8} {row['p90_ms']:>8} {row['min_ms']:>8} {row['max_ms']:>8}")
    print(json.dumps({"bench": "lsp_edit_to_diagnostics", "lines": args.lines, "edits": args.edits, "device": device,
                      "workspace_python_files": files, "load_average_1m": load,
                      "debounce_0": results[0], "debounce_200": results[200]}))


if __name__ == "__main__":
    asyncio.run(main())
