"""What the server knows about the workspace over time: the index, its first build, diagnostics, status.

Owns the WorkspaceIndex (thread-safe itself), builds it in a background thread (with `$/progress`
and `msa/status`), feeds it open buffers (which win over disk) and files changed on disk, and pushes
diagnostics per file, debounced per file and republished for other files an edit affects (import
cycles, resolution). Not the place for LSP request handling (server.py) or text conversion (convert.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp import convert
from lsp.documents import path_to_uri
from lsp.index.workspace import WorkspaceIndex
from lsp.index.discovery import read_source
from lsp.index.model import IndexOptions
from lsp.refactor import RefactorError

log = logging.getLogger(__name__)
REQUEST_FAILED = -32803  # LSP ErrorCodes.RequestFailed
PROGRESS_INTERVAL_S = 0.1
PROGRESS_CREATE_TIMEOUT_S = 5.0
RELINKING_FILES = {".gitignore", "go.mod", "tsconfig.json", "jsconfig.json", "Cargo.toml"}


class WorkspaceState:
    def __init__(self, server):
        self.server = server
        self.root: str | None = None
        self.index: WorkspaceIndex | None = None
        self.lock = threading.RLock()  # held while swapping the index and while a reader needs one consistent view
        self._dirty: set[str] = set()  # open buffers the index has not seen yet
        self._indexed_version: dict[str, int | None] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._published: dict[str, list[types.Diagnostic]] = {}
        self._cycles: list[tuple[str, ...]] = []
        self._cycle_files: set[str] = set()
        self._importers_before: dict[str, set[str]] = {}  # importers of a file changed on disk, until republished
        self._too_large: set[str] = set()  # open buffers over msa.index.maxFileSize (warned once)
        self._generation = 0
        self.file_listeners: list = []  # callables(path) after a file's text changed; path None = index rebuilt
        self.diagnostic_sources: list = []  # callables(path) -> [types.Diagnostic] published with the index's
        self.status = {"index": {"state": "indexing", "files": 0, "done": 0},
                       "worker": {"state": "off", "message": "", "model": ""},
                       "cache": {"segments": 0, "tokens": 0, "filled": 0}}

    # ---- paths ----------------------------------------------------------------------------------
    def set_root(self, root: str | None) -> None:
        self.root = os.path.abspath(root) if root else None

    def uri(self, path: str) -> str:
        return path_to_uri(path)

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.root) if self.root else path

    def lines_for(self, path: str):
        """Lines of the open buffer, else of the indexed text, else of the file on disk."""
        doc = self.server.documents.by_path(path)
        if doc is not None:
            return doc.lines
        if self.index is not None and (text := self.index.text(path)) is not None:
            return convert.split_lines(text)
        return self.server.documents.lines_for(path)

    def location(self, path: str, span) -> types.Location:
        lines = self.lines_for(path)
        return convert.location(self.uri(path), lines, span, self.server.encoding)

    def text_of(self, path: str) -> str | None:
        doc = self.server.documents.by_path(path)
        if doc is not None:
            return doc.text
        if self.index is not None and (text := self.index.text(path)) is not None:
            return text
        text, _ = read_source(path, self.server.options.index.max_file_size)
        return text

    def workspace_edit(self, edits, *, versioned: bool) -> types.WorkspaceEdit:
        """{path: [(code-point Range, new text)]} as a WorkspaceEdit in client units."""
        encoding = self.server.encoding
        per_file = {}
        for path, changes in edits.items():
            lines = self.lines_for(path)
            per_file[path] = [types.TextEdit(range=convert.index_range(lines, rng, encoding), new_text=new)
                              for rng, new in changes]
        if not versioned:
            return types.WorkspaceEdit(changes={self.uri(p): e for p, e in per_file.items()})
        changes = []
        for path, text_edits in per_file.items():
            doc = self.server.documents.by_path(path)
            ident = types.OptionalVersionedTextDocumentIdentifier(uri=self.uri(path), version=doc.version if doc else None)
            changes.append(types.TextDocumentEdit(text_document=ident, edits=text_edits))
        return types.WorkspaceEdit(document_changes=changes)

    # ---- the index ------------------------------------------------------------------------------
    def query(self, ask, path: str | None = None):
        """`ask(index)` on an index that has seen the latest text of `path` (read from disk first while the first
        build has not reached it); refusals become RequestFailed."""
        if self.index is None:
            raise JsonRpcException("the workspace is not indexed yet (no workspace folder?)", code=REQUEST_FAILED)
        if path is not None:
            self._flush(path)
        try:
            with self.lock:
                return ask(self.index)
        except RefactorError as exc:
            raise JsonRpcException(str(exc), code=REQUEST_FAILED) from exc

    async def query_async(self, ask, path: str | None = None):
        """Like query, with `ask(index)` run in a worker thread: for queries that may read many files
        (references, rename), so the event loop keeps reading messages meanwhile."""
        if self.index is None:
            raise JsonRpcException("the workspace is not indexed yet (no workspace folder?)", code=REQUEST_FAILED)
        if path is not None:
            self._flush(path)
        try:
            return await asyncio.get_running_loop().run_in_executor(None, ask, self.index)
        except RefactorError as exc:
            raise JsonRpcException(str(exc), code=REQUEST_FAILED) from exc

    def _index_options(self) -> IndexOptions:
        opts = self.server.options.index
        return IndexOptions(max_file_size=opts.max_file_size, exclude=opts.exclude, include_secrets=opts.include_secrets)

    async def start_indexing(self) -> None:
        """Starts the first (or a fresh) index build in a thread and returns at once."""
        self._generation += 1
        generation = self._generation
        index = WorkspaceIndex(self.root, self._index_options())
        if self.index is None or self.root is None:  # a rebuild keeps answering from the old index until done
            with self.lock:
                self.index = index
        for doc in self.server.documents.all():
            self._index_buffer(doc, index)
        if self.root is None:
            self.server.warn("no workspace folder: only open files are indexed")
            self._set_index_status("ready", len(index.files), len(index.files))
            return
        token = await self._create_progress(generation)
        self._set_index_status("indexing", 0, 0)
        asyncio.get_running_loop().create_task(self._build(index, generation, token))

    async def _create_progress(self, generation: int):
        caps = self.server.client_capabilities
        if not (caps.window and caps.window.work_done_progress):
            return None
        token = f"msa-index-{generation}"
        try:
            await asyncio.wait_for(self.server.work_done_progress.create_async(token), PROGRESS_CREATE_TIMEOUT_S)
        except Exception as exc:  # a client may refuse or not answer; indexing goes on without a progress bar
            log.warning("window/workDoneProgress/create failed: %r", exc)
            return None
        self.server.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title="Indexing workspace", message="finding files", percentage=0, cancellable=False))
        return token

    async def _build(self, index, generation: int, token) -> None:
        loop = asyncio.get_running_loop()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL_S or done == total:
                last[0] = now
                loop.call_soon_threadsafe(self._report_progress, token, generation, done, total)

        started = time.monotonic()
        try:
            await loop.run_in_executor(None, lambda: index.build(progress=progress))
        except Exception as exc:
            log.exception("indexing failed")
            self._set_index_status("error", self.status["index"]["files"], self.status["index"]["done"])
            if token:
                self.server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=f"failed: {exc}"))
            self.server.warn(f"indexing failed: {exc}")
            return
        total = len(index.files)
        if token:
            self.server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=f"{total} files indexed"))
        if generation != self._generation:
            return  # a newer build (settings changed) replaces this one
        with self.lock:
            self.index = index
        for doc in self.server.documents.all():  # the build re-applied buffers; these may be newer
            self._index_buffer(doc, index)
        self._dirty.clear()
        log.info("indexed %d files in %.2fs", total, time.monotonic() - started)
        await self._publish_everything_async()  # before "ready": a client seeing ready has every file's diagnostics
        self._set_index_status("ready", total, total)
        self._notify(None)

    def _report_progress(self, token, generation: int, done: int, total: int) -> None:
        if generation != self._generation:
            return
        if token:
            self.server.work_done_progress.report(token, types.WorkDoneProgressReport(
                message=f"{done}/{total} files", percentage=int(100 * done / total) if total else 100))
        self._set_index_status("indexing", total, done)

    def _set_index_status(self, state: str, files: int, done: int) -> None:
        self.status["index"] = {"state": state, "files": files, "done": done}
        self.send_status()

    def set_worker_status(self, state: str, message: str = "", model: str = "") -> None:
        """For the worker client: "off" | "starting" | "ready" | "restarting" | "error"."""
        self.status["worker"] = {"state": state, "message": message, "model": model}
        self.send_status()

    def set_cache_status(self, segments: int, tokens: int, filled: int, ranks: list | None = None) -> None:
        self.status["cache"] = {"segments": segments, "tokens": tokens, "filled": filled}
        if ranks:  # context-parallel worker: [{rank, segments, tokens}]
            self.status["cache"]["ranks"] = ranks
        self.send_status()

    def send_status(self) -> None:
        self.server.protocol.notify("msa/status", self.status)

    # ---- edits ----------------------------------------------------------------------------------
    def _notify(self, path: str | None) -> None:
        for listener in self.file_listeners:
            try:
                listener(path)
            except Exception:
                log.exception("file listener %r failed", listener)

    def buffer_changed(self, path: str) -> None:
        self._dirty.add(path)
        self._schedule(path)
        self._notify(path)

    def disk_changed(self, path: str) -> None:
        """A file changed, appeared or vanished on disk (or its buffer closed): re-read it."""
        if self.index is None:
            return
        self._importers_before.setdefault(path, set()).update(self.index.importers_of(path))
        reason = self.index.reload_file(path)
        if reason:
            log.info("not indexing %s: %s", path, reason)
        self._dirty.discard(path)
        self._indexed_version[path] = None
        self._schedule(path, everything=True)
        self._notify(path)

    def _flush(self, path: str) -> None:
        if self.index is None:
            return
        if self.status["index"]["state"] == "indexing" and path not in self._dirty and not self.index.has_file(path) \
                and self.server.documents.by_path(path) is None:
            self.index.reload_file(path)  # the build has not reached it yet: answer from the file on disk, not from nothing
        if path not in self._dirty:
            return
        doc = self.server.documents.by_path(path)
        self._dirty.discard(path)
        if doc is None:
            return
        self._index_buffer(doc)

    def _index_buffer(self, doc, index: WorkspaceIndex | None = None) -> None:
        """Feeds an open buffer to the index, unless it is over msa.index.maxFileSize (warned once)."""
        index = index or self.index
        self._indexed_version[doc.path] = doc.version
        limit = self.server.options.index.max_file_size
        if len(doc.text) > limit and len(doc.text.encode("utf-8", "surrogatepass")) > limit:
            if doc.path not in self._too_large:
                self._too_large.add(doc.path)
                self.server.warn(f"{self.relative(doc.path)} is not indexed: larger than msa.index.maxFileSize ({limit} bytes)")
            index.remove_file(doc.path)
            return
        self._too_large.discard(doc.path)
        reason = index.update_file(doc.path, doc.text)
        if reason:
            log.info("not indexing the buffer %s: %s", doc.path, reason)

    def _schedule(self, path: str, everything: bool = False) -> None:
        if (timer := self._timers.pop(path, None)) is not None:
            timer.cancel()
        delay = self.server.options.diagnostics.debounce_ms / 1000
        loop = asyncio.get_running_loop()
        self._timers[path] = loop.call_later(delay, self._publish_after_edit, path, everything)

    def _publish_after_edit(self, path: str, everything: bool) -> None:
        self._timers.pop(path, None)
        if self.index is None:
            return
        try:
            self._flush(path)
            if everything and os.path.basename(path) in RELINKING_FILES:
                self._publish_everything()  # every import may resolve differently now
                return
            cycles_before, files_before = self._cycles, self._cycle_files
            self._files_on_cycles()
            affected = {path}
            if self._cycles != cycles_before:  # a cycle's message names every file on it
                affected |= files_before | self._cycle_files
            if everything:  # a file appeared, changed or vanished on disk: its importers and
                # files with unresolved imports may resolve differently
                affected |= set(self.index.importers_of(path)) | self._importers_before.pop(path, set())
                affected |= {p for p, found in self._published.items() if any(d.code == "unresolved-import" for d in found)}
            for one in affected:
                self._publish(one)
        except Exception:
            log.exception("publishing diagnostics after an edit to %s failed", path)

    def _files_on_cycles(self) -> set[str]:
        self._cycles = self.index.import_cycles()
        self._cycle_files = {p for cycle in self._cycles for p in cycle}
        return self._cycle_files

    def _publish_everything(self) -> None:
        self._files_on_cycles()
        for path in set(self.index.files) | set(self._published):
            self._publish(path)

    async def _publish_everything_async(self) -> None:
        """Like _publish_everything, with the index's diagnostics computed off the event loop."""
        index = self.index
        found = await asyncio.get_running_loop().run_in_executor(None, index.all_diagnostics)
        if index is not self.index:
            return
        self._files_on_cycles()
        for path in set(found) | set(self._published):
            self._publish(path, found.get(path, []))

    def republish(self, path: str) -> None:
        """Publishes `path`'s diagnostics again now (a diagnostic source has new results for it)."""
        if self.index is not None:
            self._flush(path)
            self._publish(path)

    def _publish(self, path: str, found=None) -> None:
        """Pushes `path`'s diagnostics (`found`, else asked of the index) when they differ from what the
        client has; never for a stale version."""
        doc = self.server.documents.by_path(path)
        if doc is not None and path in self._dirty:
            return  # a newer edit is waiting; its own timer publishes
        if found is None or doc is not None:
            found = self.index.diagnostics(path)
        lines = self.lines_for(path) if found else []
        diagnostics = [convert.diagnostic(lines, d, self.server.encoding) for d in found]
        for source in self.diagnostic_sources:  # e.g. the model's "unusual code" hints (lsp.unusual)
            try:
                diagnostics += source(path)
            except Exception:
                log.exception("diagnostic source %r failed", source)
        version = doc.version if doc is not None else None
        if doc is None and self._published.get(path, []) == diagnostics:
            return
        if doc is not None and self._indexed_version.get(path) not in (None, doc.version):
            return
        if diagnostics:
            self._published[path] = diagnostics
        else:
            self._published.pop(path, None)
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=self.uri(path), diagnostics=diagnostics, version=version))
