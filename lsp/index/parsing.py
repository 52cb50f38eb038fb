"""Reads and parses many files, in worker processes when there are enough of them.

Workers are started with the "spawn" method (safe inside a threaded server) and return compact
FileFacts plus the text; nothing tree-sitter crosses the process boundary. If a worker dies, the
files not yet returned are parsed in this process and a warning is logged.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, NamedTuple

from .discovery import read_source
from .extract import extract
from .model import FileFacts

log = logging.getLogger("msa.index")

PARALLEL_MIN_FILES = 200
CHUNK = 32


class Parsed(NamedTuple):
    path: str
    language: str
    text: str | None
    facts: FileFacts | None
    skip_reason: str


def parse_one(path: str, language: str, max_file_size: int) -> Parsed:
    text, reason = read_source(path, max_file_size)
    if text is None:
        return Parsed(path, language, None, None, reason)
    try:
        return Parsed(path, language, text, extract(path, text, language), "")
    except Exception as exc:  # a grammar crash on one file must not stop the index
        log.exception("failed to parse %s", path)
        return Parsed(path, language, None, None, f"parse failure ({exc.__class__.__name__}: {exc})")


def _parse_chunk(chunk: list[tuple[str, str]], max_file_size: int) -> list[Parsed]:
    return [parse_one(path, language, max_file_size) for path, language in chunk]


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def parse_many(files: list[tuple[str, str]], max_file_size: int, workers: int,
               progress: Callable[[int, int], None] | None = None) -> Iterable[Parsed]:
    """Yield Parsed for every (path, language), calling progress(done, total) along the way."""
    total = len(files)
    done = 0
    if progress:
        progress(0, total)
    if workers <= 1 or total < PARALLEL_MIN_FILES:
        for path, language in files:
            yield parse_one(path, language, max_file_size)
            done += 1
            if progress and (done % 16 == 0 or done == total):
                progress(done, total)
        return
    # big files first so the pool's tail is short
    ordered = sorted(files, key=lambda item: -_size(item[0]))
    chunks = [ordered[i : i + CHUNK] for i in range(0, total, CHUNK)]
    finished = 0
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_parse_chunk, chunk, max_file_size) for chunk in chunks]
            for future in futures:
                results = future.result()
                finished += 1
                yield from results
                done += len(results)
                if progress:
                    progress(done, total)
    except (BrokenProcessPool, OSError) as exc:
        # a worker died (killed, out of memory) or could not start: finish here, say so in the log
        log.warning("parse workers failed (%s); parsing the remaining %d files in this process",
                    exc, total - done)
        for chunk in chunks[finished:]:
            for path, language in chunk:
                yield parse_one(path, language, max_file_size)
                done += 1
                if progress and (done % 16 == 0 or done == total):
                    progress(done, total)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
