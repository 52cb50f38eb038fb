"""`msa-lsp complete FILE:LINE:COL`: print the model's completion at a cursor, using the repository around FILE.

Finds the repository root (nearest folder with .git, pyproject.toml, package.json, go.mod or Cargo.toml; else
FILE's folder), lists its files with lsp.index's discovery rules (gitignore, size cap, no secrets), starts a worker,
fills its cache, asks for one completion at the 1-based line and character column, post-processes it like the
editor would and prints it on stdout. Exit status: 0 printed, 1 nothing worth offering, 2 error.

Non-job: no LSP, no model code (the worker process does the model work).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from lsp.completion import build_request
from lsp.index.discovery import discover, read_source
from lsp.index.model import IndexOptions
from lsp.postprocess import finish_completion
from lsp.worker_client import WorkerClient, WorkerSettings
from lsp.worker_connection import WorkerError, WorkerUnavailable

ROOT_MARKERS = (".git", "pyproject.toml", "package.json", "go.mod", "Cargo.toml")
READY_TIMEOUT_S, SYNC_TIMEOUT_S = 600.0, 1800.0


class CompleteError(Exception):
    """Something the user must fix or know; printed as one line."""


def parse_location(location: str) -> tuple[str, int, int]:
    path, line, column = location, None, None
    parts = location.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        path, line, column = parts[0], int(parts[1]), int(parts[2])
    if line is None or line < 1 or column < 1:
        raise CompleteError(f"expected FILE:LINE:COL with 1-based numbers, got {location!r}")
    return os.path.realpath(path), line, column


def find_root(path: str) -> str:
    start = os.path.dirname(path)
    directory = start
    while True:
        if any(os.path.exists(os.path.join(directory, marker)) for marker in ROOT_MARKERS):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return start
        directory = parent


def repository_files(root: str, target: str, target_text: str) -> dict[str, str]:
    options = IndexOptions()
    files = {}
    for path, _language in discover(root, options).files:
        text, _reason = read_source(path, options.max_file_size)
        if text is not None:
            files[os.path.relpath(path, root)] = text
    files[os.path.relpath(target, root)] = target_text
    return files


async def _complete(args, path: str, line: int, column: int) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CompleteError(f"cannot read {path}: {exc}")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if line > len(lines) or column > len(lines[line - 1]) + 1:
        raise CompleteError(f"{path} has no line {line} column {column} (it has {len(lines)} lines)")
    root = find_root(path)
    files = repository_files(root, path, text)
    settings = WorkerSettings(model=args.model or "", repo_name=os.path.basename(root), ready_timeout_s=READY_TIMEOUT_S)
    failed = asyncio.Event()

    def watch(client: WorkerClient) -> None:
        if client.state in ("restarting", "error"):
            failed.set()

    client = WorkerClient(settings, on_change=watch)
    started = time.perf_counter()
    client.start()
    try:
        ready = asyncio.create_task(client.wait_ready(READY_TIMEOUT_S))
        await asyncio.wait([ready, asyncio.create_task(failed.wait())], return_when=asyncio.FIRST_COMPLETED)
        if not ready.done() or not ready.result():
            raise CompleteError(f"the worker did not start: {client.message or 'timed out'}")
        client.set_files(files)
        if not await client.wait_synced(SYNC_TIMEOUT_S):
            raise CompleteError(f"filling the repository cache did not finish: {client.message}")
        print(f"msa-lsp complete: {len(files)} files from {root} in the cache "
              f"({client.cache['tokens']} tokens), {time.perf_counter() - started:.1f}s", file=sys.stderr)
        request = build_request(text, line - 1, column - 1, os.path.relpath(path, root))
        try:
            stream = await client.complete(path=request.path, prefix=request.prefix, suffix=request.suffix,
                                           max_tokens=args.max_tokens, stop=request.stop)
            raw = await stream.text()
        except (WorkerError, WorkerUnavailable) as exc:
            raise CompleteError(f"the worker failed: {exc}")
        result = finish_completion(raw, request.prefix, request.suffix)
        return result.split("\n", 1)[0] if request.single_line else result
    finally:
        await client.stop()


def main(args) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="msa-lsp complete: %(message)s")
    try:
        path, line, column = parse_location(args.location)
        text = asyncio.run(_complete(args, path, line, column))
    except CompleteError as exc:
        print(f"msa-lsp complete: {exc}", file=sys.stderr)
        return 2
    if not text:
        print("msa-lsp complete: the model offered nothing at this position", file=sys.stderr)
        return 1
    sys.stdout.write(text + "\n")
    return 0
