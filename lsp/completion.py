"""AI completion in the server: FIM requests at the cursor, inline completion, the AI completion item.

`register(server)` adds `textDocument/inlineCompletion` and an AI item provider for `textDocument/completion`,
and starts a `CompletionService` that owns the worker client: it mirrors the indexed files into the worker's
cache (with `$/progress` "Filling repository cache"), reports worker and cache state in msa/status, cancels the
previous request of a document when a new one arrives, honours `$/cancelRequest` (the worker stops within one
decode step) and answers nothing when the document changed while the model was writing.

Non-job: text heuristics on model output (lsp.postprocess), the socket protocol (lsp.worker_client), indexing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp import convert
from lsp.documents import uri_to_path
from lsp.postprocess import CLOSERS, finish_completion
from lsp.worker_client import WorkerClient, WorkerSettings
from lsp.worker_connection import WorkerError, WorkerUnavailable

log = logging.getLogger(__name__)
PREFIX_CHARS, SUFFIX_CHARS = 6000, 2000
WINDOW_STEP_CHARS = 512  # the prefix window's start snaps to multiples of this (then to the next line start)
REQUEST_FAILED = -32803
READY_WAIT_S = 5.0
BUFFER_SYNC_S = 2.0
ITEM_TIMEOUT_S = 3.0  # the completion list waits this long for the model's item, then comes without it
LINE_END_CHARS = CLOSERS + "\"'`;:,. \t"


@dataclass(frozen=True)
class FimRequest:
    path: str  # repository-relative, as the cache names it
    prefix: str
    suffix: str
    single_line: bool

    @property
    def stop(self) -> list[str]:
        return ["\n"] if self.single_line else []


def build_request(text: str, line: int, column: int, path: str, *, prefix_chars: int = PREFIX_CHARS,
                  suffix_chars: int = SUFFIX_CHARS) -> FimRequest:
    """FIM windows around a 0-based (line, code-point column): whole lines, at most ~prefix/suffix_chars."""
    lines = convert.split_lines(text)
    line = max(0, min(line, len(lines) - 1))
    column = max(0, min(column, len(lines[line])))
    offset = sum(len(item) + 1 for item in lines[:line]) + column
    body = "\n".join(lines)
    step = max(1, min(WINDOW_STEP_CHARS, prefix_chars // 8))  # the start moves in coarse steps:
    start = max(0, -(-(offset - prefix_chars) // step) * step)
    prefix = body[start:offset]  # the prompt's start stays put while typing, so the worker reuses its tail KV
    if start > 0 and "\n" in prefix:
        prefix = prefix[prefix.index("\n") + 1:]
    end = min(len(body), offset + suffix_chars)
    suffix = body[offset:end]
    if end < len(body) and "\n" in suffix:
        suffix = suffix[: suffix.rindex("\n") + 1]
    rest_of_line = lines[line][column:]
    single_line = bool(rest_of_line.strip(LINE_END_CHARS))
    return FimRequest(path=path, prefix=prefix, suffix=suffix, single_line=single_line)


def _settings_from(options, root: str | None) -> WorkerSettings:
    return WorkerSettings(
        model=options.model, address=options.worker.address, token_file=options.worker.token_file,
        command=tuple(options.worker.command), devices=options.worker.devices, cache_dir=options.cache.dir,
        cache_max_gib=options.cache.max_gib, layout=options.layout, attention=options.attention,
        member_names=options.completion.member_names,
        repo_name=os.path.basename(root) if root else "repo")


class CompletionService:
    """The server's AI features: one worker client, the repository mirror, the in-flight request per document."""

    def __init__(self, server):
        self.server = server
        self.client: WorkerClient | None = None
        self._settings: WorkerSettings | None = None
        self._inflight: dict[str, asyncio.Task] = {}
        self._fill_token: str | None = None
        self._fill_count = 0
        self._buffer_timers: dict[str, asyncio.TimerHandle] = {}

    # ------------------------------------------------------------------------------------ worker lifecycle

    def wanted(self) -> bool:
        """A worker is kept only while a feature that needs the model is on."""
        options = self.server.options
        return options.inline_completion.enable or options.diagnostics.unusual_code

    def ensure_worker(self) -> WorkerClient | None:
        """The worker client for the current settings; (re)started when settings that shape it changed."""
        if not self.wanted():
            if self.client is not None:
                client, self.client, self._settings = self.client, None, None
                asyncio.get_running_loop().create_task(client.stop())
                self.server.state.set_worker_status("off", "no feature that needs the model is on", "")
            return None
        settings = _settings_from(self.server.options, self.server.state.root)
        if self.client is not None and settings == self._settings:
            return self.client
        old = self.client
        self._settings = settings
        self.client = WorkerClient(settings, on_change=self._on_worker_change, on_fill=self._on_fill)
        if old is not None:
            files = dict(old._files)
            asyncio.get_running_loop().create_task(old.stop())
            self.client._files = files
        self.client.start()
        return self.client

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.stop()

    async def restart(self) -> None:
        """The "restart worker" command: a fresh worker process, the repository synced into it again."""
        client = self.ensure_worker()
        if client is None:
            raise RuntimeError("no worker to restart: inline completion and unusual-code hints are both off")
        await client.restart()

    def _on_worker_change(self, client: WorkerClient) -> None:
        if client is not self.client:
            return
        state = self.server.state
        state.set_worker_status(client.state, client.message, client.model)
        cache = client.cache
        if state.status.get("cache") != cache:
            state.set_cache_status(cache["segments"], cache["tokens"], cache["filled"], ranks=cache.get("ranks"))

    def _on_fill(self, done: int, total: int) -> None:
        asyncio.get_running_loop().create_task(self._fill_progress(done, total))

    async def _fill_progress(self, done: int, total: int) -> None:
        server = self.server
        caps = server.client_capabilities
        if not (caps and caps.window and caps.window.work_done_progress) or total == 0:
            return
        if done == 0 and self._fill_token is None:
            self._fill_count += 1
            token = f"msa-cache-{self._fill_count}"
            self._fill_token = token
            try:
                await server.work_done_progress.create_async(token)
            except Exception as exc:
                log.warning("window/workDoneProgress/create refused: %s", exc)
                self._fill_token = None
                return
            server.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                title="Filling repository cache", message=f"0/{total} files", percentage=0, cancellable=False))
            return
        token = self._fill_token
        if token is None:
            return
        if done >= total:
            self._fill_token = None
            server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=f"{total} files cached"))
        else:
            server.work_done_progress.report(token, types.WorkDoneProgressReport(
                message=f"{done}/{total} files", percentage=int(100 * done / total)))

    # ------------------------------------------------------------------------------------ repository mirror

    def sync_repository(self) -> None:
        """Mirror every indexed file (open buffers win) into the worker's cache; cheap when nothing changed."""
        state = self.server.state
        index = state.index
        if index is None:
            return
        files = {}
        with state.lock:
            for path in index.files:
                doc = self.server.documents.by_path(path)
                text = doc.text if doc is not None else index.text(path)
                if text is not None:
                    files[state.relative(path)] = text
        client = self.ensure_worker()
        if client is not None:
            client.set_files(files)

    def file_changed(self, path: str | None) -> None:
        """A file's text changed (None: the whole index was rebuilt).

        Edits to an open buffer reach the worker after BUFFER_SYNC_S of quiet: completions in that file read it
        from the live tail, not from its cached segment, and every sync costs a re-prefill of the file.
        """
        if path is None:
            self.sync_repository()
            return
        timer = self._buffer_timers.pop(path, None)
        if timer is not None:
            timer.cancel()
        if self.server.documents.by_path(path) is not None:
            loop = asyncio.get_running_loop()
            self._buffer_timers[path] = loop.call_later(BUFFER_SYNC_S, self._send_file, path)
            return
        self._send_file(path)

    def _send_file(self, path: str) -> None:
        self._buffer_timers.pop(path, None)
        state = self.server.state
        client = self.ensure_worker()
        if client is None:
            return
        index = state.index
        with state.lock:
            indexed = index is not None and index.text(path) is not None
        doc = self.server.documents.by_path(path)
        text = (doc.text if doc is not None else index.text(path)) if indexed else None
        relative = state.relative(path)
        if text is None:
            client.remove_file(relative)
        else:
            client.update_file(relative, text)

    # ------------------------------------------------------------------------------------ requests

    async def _request_text(self, uri: str, position: types.Position, *, kind: str, debounce: bool,
                            wait_for_worker: bool, selected: types.SelectedCompletionInfo | None = None):
        """(document, line, start column, end column, text to put there); None when there is nothing to offer.

        One request per (document, kind) runs at a time: a newer one cancels the older (cancel-previous), so
        inline completions and completion-list requests of one document do not cancel each other.
        """
        server = self.server
        doc = server.documents.get(uri)
        if doc is None:
            path = uri_to_path(uri)
            raise JsonRpcException(f"{uri} is not open (inline completion needs didOpen)", code=REQUEST_FAILED) \
                if path else JsonRpcException(f"not a file URI: {uri}", code=REQUEST_FAILED)
        key = (uri, kind)
        previous = self._inflight.pop(key, None)
        if previous is not None and not previous.done():
            previous.cancel()  # cancel-previous: clients like Neovim do not cancel on their own
        task = asyncio.current_task()
        self._inflight[key] = task
        try:
            if debounce and server.options.completion.debounce_ms:
                await asyncio.sleep(server.options.completion.debounce_ms / 1000)
            return await self._complete(doc, position, wait_for_worker, selected)
        finally:
            if self._inflight.get(key) is task:
                del self._inflight[key]

    async def _complete(self, doc, position: types.Position, wait_for_worker: bool, selected=None):
        client = self.ensure_worker()
        if client is None:
            return None
        if client.state != "ready" and wait_for_worker:
            await client.wait_ready(READY_WAIT_S)
        version = doc.version
        encoding = self.server.encoding
        line, column = convert.to_server_position(doc.lines, position, encoding)
        start = end = column
        text, lead = doc.text, ""
        if selected is not None:  # the popup's selected item: complete as if it were inserted, then extend it
            s_line, s_col = convert.to_server_position(doc.lines, selected.range.start, encoding)
            e_line, e_col = convert.to_server_position(doc.lines, selected.range.end, encoding)
            if not s_line == e_line == line or s_col > e_col:
                return None
            lines = list(doc.lines)
            lines[line] = lines[line][:s_col] + selected.text + lines[line][e_col:]
            text, lead, start, end, column = "\n".join(lines), selected.text, s_col, e_col, s_col + len(selected.text)
        request = build_request(text, line, column, self.server.state.relative(doc.path))
        try:
            stream = await client.complete(path=request.path, prefix=request.prefix, suffix=request.suffix,
                                           max_tokens=self.server.options.completion.max_tokens,
                                           stop=request.stop)
            raw = await stream.text()
        except WorkerUnavailable as exc:
            raise JsonRpcException(f"msa-lsp: the model worker is {client.state}: {exc}", code=REQUEST_FAILED)
        except WorkerError as exc:
            if exc.code == "cancelled":
                raise asyncio.CancelledError() from None
            raise JsonRpcException(f"msa-lsp worker: {exc}", code=REQUEST_FAILED) from None
        current = self.server.documents.get(doc.uri)
        if current is None or current.version != version:
            log.info("dropping a completion for %s: version %s is now %s", doc.uri, version,
                     current.version if current else "closed")
            return None
        text = finish_completion(raw, request.prefix, request.suffix)
        if request.single_line:
            text = text.split("\n", 1)[0].rstrip()
        return (doc, line, start, end, lead + text) if text else None

    async def inline_completion(self, params: types.InlineCompletionParams):
        server = self.server
        if not server.options.inline_completion.enable:
            self.ensure_worker()  # stops a worker no feature needs any more
            return None
        automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        try:
            found = await self._request_text(params.text_document.uri, params.position, kind="inline",
                                             debounce=automatic, wait_for_worker=not automatic,
                                             selected=params.context.selected_completion_info)
        except JsonRpcException:
            if automatic:
                log.info("no inline completion: worker not available", exc_info=True)
                return None
            raise
        if found is None:
            return None
        doc, line, start, end, text = found
        return types.InlineCompletionList(items=[types.InlineCompletionItem(
            insert_text=text, range=convert.to_client_range(doc.lines, (line, start), (line, end), server.encoding))])

    async def completion_items(self, server, params: types.CompletionParams, doc) -> list[types.CompletionItem]:
        """The AI item for textDocument/completion: replaces the word being typed with word + model text.

        Left out for clients that advertise inline completion: they already show the same text as ghost text."""
        if doc is None or not server.options.inline_completion.enable or _client_shows_ghost_text(server):
            return []
        try:
            found = await asyncio.wait_for(self._request_text(
                doc.uri, params.position, kind="item", debounce=False, wait_for_worker=False), ITEM_TIMEOUT_S)
        except (JsonRpcException, asyncio.TimeoutError) as exc:
            log.info("no AI completion item: %s", exc or "the model took too long")
            return []
        if found is None:
            return []
        doc, line, column, _, text = found
        current_line = doc.lines[line]
        word_start = column
        while word_start > 0 and (current_line[word_start - 1].isalnum() or current_line[word_start - 1] == "_"):
            word_start -= 1
        typed = current_line[word_start:column]
        new_text = typed + text
        start = convert.to_client_position(doc.lines, line, word_start, server.encoding)
        end = convert.to_client_position(doc.lines, line, column, server.encoding)
        label = new_text.strip().split("\n", 1)[0][:60] or new_text[:60]
        return [types.CompletionItem(
            label=label, kind=types.CompletionItemKind.Snippet, detail="msa-lsp model", sort_text="0",
            filter_text=new_text, insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(range=types.Range(start=start, end=end), new_text=new_text),
            documentation=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                              value=f"```\n{new_text}\n```\nwritten by the model"))]


def _client_shows_ghost_text(server) -> bool:
    capabilities = server.client_capabilities
    return bool(capabilities and capabilities.text_document and capabilities.text_document.inline_completion)


def register(server) -> CompletionService:
    """Adds inline completion and the AI completion item to `server` (an MsaServer)."""
    service = CompletionService(server)
    server.worker = service

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls, params: types.InlineCompletionParams):
        return await service.inline_completion(params)

    server.completion_providers.append(service.completion_items)
    listeners = getattr(server.state, "file_listeners", None)
    if listeners is not None:
        listeners.append(service.file_changed)
    else:
        log.warning("the workspace state offers no file listeners: the worker cache will not follow edits")

    if types.SHUTDOWN not in server.protocol.fm.features:  # the spawned worker also exits when stdin closes

        @server.feature(types.SHUTDOWN)
        async def shutdown(ls, params):
            with contextlib.suppress(Exception):
                await service.stop()

    return service
