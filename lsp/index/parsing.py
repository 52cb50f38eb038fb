"""Reads and parses many files, in worker processes when there are enough of them.

Workers are started with the "spawn" method (safe inside a threaded server), each fed one chunk of files at a
time through its own pipe, and return compact FileFacts plus the text; nothing tree-sitter crosses the process
boundary. If a worker dies, its pipe closes: the files not yet returned are parsed in this process and a warning
is logged (no shared queue whose lock a killed worker could leave held).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
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

    def advance(n: int) -> None:  # reports at every chunk, or every 16 files, and at the end
        nonlocal done
        done += n
        if progress and (n > 1 or done % 16 == 0 or done == total):
            progress(done, total)

    if progress:
        progress(0, total)
    if workers <= 1 or total < PARALLEL_MIN_FILES:
        for path, language in files:
            yield parse_one(path, language, max_file_size)
            advance(1)
        return
    # big files first so the pool's tail is short
    ordered = sorted(files, key=lambda item: -_size(item[0]))
    chunks = [ordered[i : i + CHUNK] for i in range(0, total, CHUNK)]
    results: dict[int, list[Parsed]] = {}
    emitted = 0
    try:
        for index, parsed in _parse_in_workers(chunks, max_file_size, workers):
            results[index] = parsed
            while emitted in results:  # in chunk order, as one process would
                chunk_results = results.pop(emitted)
                emitted += 1
                yield from chunk_results
                advance(len(chunk_results))
    except (_WorkerDied, OSError) as exc:
        # a worker died (killed, out of memory) or could not start: finish here, say so in the log
        log.warning("parse workers failed (%s); parsing the remaining %d files in this process", exc, total - done)
        for index in range(emitted, len(chunks)):
            for parsed in results.pop(index, None) or _parse_chunk(chunks[index], max_file_size):
                yield parsed
                advance(1)


class _WorkerDied(Exception):
    pass


def _serve_chunks(conn, max_file_size: int) -> None:
    """A parse worker: answers each chunk it receives with its Parsed list, until it receives None."""
    while (chunk := conn.recv()) is not None:
        conn.send(_parse_chunk(chunk, max_file_size))


def _parse_in_workers(chunks: list, max_file_size: int, workers: int) -> Iterable[tuple[int, list[Parsed]]]:
    """(chunk index, its Parsed list) as "spawn" worker processes finish them, each worker fed one chunk at a time
    through its own pipe.  Raises _WorkerDied when one dies (its pipe closes); the workers never outlive this."""
    context = multiprocessing.get_context("spawn")
    slots = []  # [process, connection, index of the chunk it parses or None]
    try:
        for _ in range(min(workers, len(chunks))):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve_chunks, args=(theirs, max_file_size), daemon=True)
            process.start()
            theirs.close()
            slots.append([process, ours, None])
        queued = iter(range(len(chunks)))
        for slot in slots:
            slot[2] = next(queued, None)
            if slot[2] is not None:
                slot[1].send(chunks[slot[2]])
        while busy := [slot for slot in slots if slot[2] is not None]:
            for conn in multiprocessing.connection.wait([slot[1] for slot in busy]):
                slot = next(slot for slot in busy if slot[1] is conn)
                try:
                    parsed = conn.recv()
                except (EOFError, OSError) as exc:
                    raise _WorkerDied(f"worker pid {slot[0].pid} exited with {slot[0].exitcode}") from exc
                yield slot[2], parsed
                slot[2] = next(queued, None)
                if slot[2] is not None:
                    conn.send(chunks[slot[2]])
    finally:
        for process, conn, _ in slots:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        for process, _, _ in slots:
            process.join(timeout=2)
            if process.is_alive():
                process.kill()
                process.join()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
