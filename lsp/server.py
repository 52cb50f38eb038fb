"""The language server: LSP handlers over the workspace index, kept thin.

Each handler finds the document, asks the index (lsp.index) or a refactor (lsp.refactor), converts
with lsp.convert and returns lsprotocol types. Indexing state, diagnostics scheduling and status
live in lsp.workspace_state. Model work is not done here: lsp.completion registers inline completion
and adds the model's completion items through `MsaServer.completion_providers`.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest, JsonRpcParseError
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method

from lsp import __version__, convert, refactor
from lsp.documents import Documents, UnknownDocument, uri_to_path
from lsp.options import SECTION, Options, parse_options
from lsp.workspace_state import REQUEST_FAILED, WorkspaceState

log = logging.getLogger(__name__)


class MsaProtocol(LanguageServerProtocol):
    """pygls' protocol with our own document store and JSON-RPC error replies for malformed requests."""

    def structure_message(self, data):
        try:
            return super().structure_message(data)
        except Exception as exc:
            if isinstance(data, dict) and "method" in data and data.get("id") is not None:
                error = JsonRpcInvalidParams(f"invalid params for {data['method']}: {exc.__cause__ or exc}")
                self._send_response(data["id"], error=error.to_response_error())
            raise

    # Open buffers live in lsp.documents; pygls' own store would raise on a change to an unopened file.
    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None


class MsaServer(LanguageServer):
    def __init__(self):
        super().__init__("msa-lsp", __version__, protocol_cls=MsaProtocol)
        self.options = Options()
        self.documents = Documents()
        self.state = WorkspaceState(self)
        self.worker = None  # set by lsp.completion when a worker is configured
        self.completion_providers: list = []  # async (server, params, document) -> list[CompletionItem]
        self.code_action_providers: list = []  # (server, params, path, start, end) -> list[CodeAction]

    @property
    def encoding(self) -> str:
        encoding = self.workspace.position_encoding or convert.UTF16
        return getattr(encoding, "value", encoding)  # "utf-8" | "utf-16" | "utf-32"

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=f"msa-lsp: {message}"))

    def report_server_error(self, error, source):
        if isinstance(error, ValueError) and not isinstance(error, JsonRpcInvalidRequest):
            # a body that is not JSON: JSON-RPC's answer is a parse error with a null id
            self.protocol._send_data({"jsonrpc": "2.0", "id": None,
                                      "error": {"code": JsonRpcParseError.CODE, "message": f"not JSON: {error}"}})
            return
        super().report_server_error(error, source)

    def apply_options(self, raw) -> None:
        options, warnings = parse_options(raw)
        for warning in warnings:
            self.warn(f"setting {warning}")
        self.options = options


SERVER = MsaServer()


def _document_or_error(uri: str):
    """The open buffer, or the file on disk by path; raises a clear JSON-RPC error otherwise."""
    path = uri_to_path(uri)
    if path is None:
        raise JsonRpcInvalidParams(f"not a file URI: {uri}")
    return path, SERVER.state.lines_for(path)


@SERVER.feature(types.INITIALIZE)
def initialize(ls: MsaServer, params: types.InitializeParams):
    ls.apply_options(params.initialization_options)
    folders = [uri_to_path(f.uri) for f in params.workspace_folders or []]
    root = next((f for f in folders if f), None) or (uri_to_path(params.root_uri) if params.root_uri else None) \
        or params.root_path
    ls.state.set_root(root)
    if len([f for f in folders if f]) > 1:
        ls.warn(f"only the first workspace folder is indexed ({root}); the others get no cross-file features")
    log.info("root %s, position encoding %s", root, ls.encoding)


REINDEX_COMMAND, RESTART_WORKER_COMMAND = "msa.reindex", "msa.restartWorker"
WATCHED_GLOB = "**/*.{py,pyi,ts,tsx,mts,cts,js,jsx,mjs,cjs,go,rs}"
CONFIG_GLOB = "**/{.gitignore,go.mod,tsconfig.json,jsconfig.json,Cargo.toml}"


@SERVER.feature(types.INITIALIZED)
async def initialized(ls: MsaServer, params: types.InitializedParams):
    if _client_has("workspace.did_change_watched_files.dynamic_registration"):
        watchers = [types.FileSystemWatcher(glob_pattern=glob) for glob in (WATCHED_GLOB, CONFIG_GLOB)]
        registration = types.Registration(id="msa-watch", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                                          register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers))
        future = ls.client_register_capability(types.RegistrationParams(registrations=[registration]))
        future.add_done_callback(_registered)
    await ls.state.start_indexing()


def _registered(future) -> None:
    if future.cancelled() or future.exception() is not None:
        log.warning("the client did not register file watchers (%s): changes on disk reach the index only "
                    "when the client reports them", None if future.cancelled() else future.exception())


@SERVER.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(ls: MsaServer, params: types.DidChangeConfigurationParams):
    settings = params.settings
    if isinstance(settings, dict) and SECTION in settings:
        settings = settings[SECTION]
    elif not settings and _client_has("workspace.configuration"):
        answer = await ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)]))
        settings = answer[0] if answer else None
    before = ls.options
    ls.apply_options(settings)
    if ls.options.index != before.index:
        await ls.state.start_indexing()


def _client_has(dotted: str) -> bool:
    value = SERVER.client_capabilities
    for part in dotted.split("."):
        value = getattr(value, part, None)
    return bool(value)


@SERVER.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: MsaServer, params: types.DidOpenTextDocumentParams):
    doc = ls.documents.open(params.text_document)
    if doc is not None:
        ls.state.buffer_changed(doc.path)


@SERVER.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: MsaServer, params: types.DidChangeTextDocumentParams):
    try:
        doc = ls.documents.change(params, ls.encoding)
    except UnknownDocument:
        ls.warn(f"ignored a change to {params.text_document.uri}: it was never opened (didOpen first)")
        return
    if doc is not None:
        ls.state.buffer_changed(doc.path)


@SERVER.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
def did_save(ls: MsaServer, params: types.DidSaveTextDocumentParams):
    doc = ls.documents.get(params.text_document.uri)
    if doc is not None:
        ls.state.buffer_changed(doc.path)


@SERVER.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: MsaServer, params: types.DidCloseTextDocumentParams):
    doc = ls.documents.close(params.text_document.uri)
    if doc is not None:
        ls.state.disk_changed(doc.path)


@SERVER.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
async def did_change_watched_files(ls: MsaServer, params: types.DidChangeWatchedFilesParams):
    paths = [path for event in params.changes if (path := uri_to_path(event.uri)) is not None]
    if any(os.path.basename(path) == ".gitignore" for path in paths):
        await ls.state.start_indexing()  # what is ignored changed: walk the tree again
        return
    for path in paths:
        if ls.documents.by_path(path) is None:
            ls.state.disk_changed(path)


@SERVER.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def document_symbol(ls: MsaServer, params: types.DocumentSymbolParams):
    path, lines = _document_or_error(params.text_document.uri)
    symbols = ls.state.query(lambda index: index.symbols_in(path), path)
    return convert.document_symbols(lines, symbols, ls.encoding)


@SERVER.feature(types.WORKSPACE_SYMBOL)
async def workspace_symbol(ls: MsaServer, params: types.WorkspaceSymbolParams):
    found = await ls.state.query_async(lambda index: index.search(params.query, limit=200))
    return [types.SymbolInformation(
        name=d.name, kind=convert.SYMBOL_KINDS.get(d.kind, types.SymbolKind.Variable), container_name=d.container or None,
        location=ls.state.location(d.path, d.name_range)) for d in found]


def _server_position(params) -> tuple[str, int, int]:
    path, lines = _document_or_error(params.text_document.uri)
    line, column = convert.to_server_position(lines, params.position, SERVER.encoding)
    return path, line, column


@SERVER.feature(types.TEXT_DOCUMENT_DEFINITION)
def definition(ls: MsaServer, params: types.DefinitionParams):
    path, line, column = _server_position(params)
    found = ls.state.query(lambda index: index.definition_at(path, line, column), path)
    return [ls.state.location(d.path, d.name_range) for d in found] or None


@SERVER.feature(types.TEXT_DOCUMENT_REFERENCES)
async def references(ls: MsaServer, params: types.ReferenceParams):
    path, line, column = _server_position(params)
    found = await ls.state.query_async(lambda index: refactor.references_at(
        index, path, line, column, params.context.include_declaration), path)
    return [ls.state.location(ref_path, span) for ref_path, span in found] or None


@SERVER.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
def prepare_rename(ls: MsaServer, params: types.PrepareRenameParams):
    path, line, column = _server_position(params)
    target = ls.state.query(lambda index: refactor.rename_target(index, path, line, column), path)
    return types.PrepareRenamePlaceholder(range=ls.state.location(path, target.span).range, placeholder=target.name)


@SERVER.feature(types.TEXT_DOCUMENT_RENAME)
async def rename(ls: MsaServer, params: types.RenameParams):
    path, line, column = _server_position(params)
    edits = await ls.state.query_async(
        lambda index: refactor.rename_edits(index, path, line, column, params.new_name), path)
    return ls.state.workspace_edit(edits, versioned=_client_has("workspace.workspace_edit.document_changes"))


_QUALIFIED = re.compile(r"([\w$]+)\s*(?:\.|::)\s*[\w$]*$")


@SERVER.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["."]))
async def completion(ls: MsaServer, params: types.CompletionParams):
    path, line, column = _server_position(params)
    lines = ls.state.lines_for(path)
    before = lines[line][:column] if lines else ""
    qualified = _QUALIFIED.search(before)
    if qualified:  # `module.` or `module::`: that module's names; nothing for other receivers
        found = ls.state.query(lambda index: index.members_of(path, qualified.group(1)), path)
    else:
        found = ls.state.query(lambda index: index.symbols_in_scope(path), path)
    items = [types.CompletionItem(label=d.name, kind=convert.COMPLETION_KINDS.get(d.kind, types.CompletionItemKind.Text),
                                  detail=ls.state.relative(d.path), sort_text=f"1{d.name}") for d in found]
    doc = ls.documents.by_path(path)
    for provider in ls.completion_providers:
        try:
            items.extend(await provider(ls, params, doc))
        except Exception:  # an AI item must never take the workspace items down with it
            log.exception("completion provider %r failed", provider)
    return types.CompletionList(is_incomplete=bool(ls.completion_providers), items=items)


@SERVER.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
    code_action_kinds=[types.CodeActionKind.QuickFix, types.CodeActionKind.RefactorRewrite], resolve_provider=True))
def code_action(ls: MsaServer, params: types.CodeActionParams):
    path, lines = _document_or_error(params.text_document.uri)
    on_cycle = [d for d in params.context.diagnostics if d.code == "import-cycle"]
    kind = types.CodeActionKind.QuickFix if on_cycle else types.CodeActionKind.RefactorRewrite
    wanted = lambda kind: not params.context.only or any(  # noqa: E731
        kind == only or kind.startswith(f"{only}.") for only in params.context.only)
    start = convert.to_server_position(lines, params.range.start, ls.encoding)
    end = convert.to_server_position(lines, params.range.end, ls.encoding)
    actions = []
    if wanted(kind):
        text = ls.state.text_of(path)
        fixes = ls.state.query(lambda index: refactor.cycle_fixes(index, path, text, start, end, bool(on_cycle)), path)
        versioned = _client_has("workspace.workspace_edit.document_changes")
        actions = [types.CodeAction(title=fix.title, kind=kind, diagnostics=on_cycle or None, is_preferred=bool(on_cycle),
                                    edit=ls.state.workspace_edit(fix.edits, versioned=versioned)) for fix in fixes]
    for provider in ls.code_action_providers:  # model-written actions (lsp.ai_actions), resolved lazily
        try:
            actions.extend(action for action in provider(ls, params, path, start, end) if wanted(action.kind))
        except Exception:
            log.exception("code action provider %r failed", provider)
    return actions or None


@SERVER.command(REINDEX_COMMAND)
async def reindex(ls: MsaServer, *args):
    """Rebuild the workspace index from disk (open buffers still win); the old index answers meanwhile."""
    await ls.state.start_indexing()


async def _restart_worker(ls: MsaServer, *args):
    restart = getattr(ls.worker, "restart", None)
    if restart is None:
        raise JsonRpcException("this server's worker client cannot be restarted", code=REQUEST_FAILED)
    await restart()


def _load_extensions(server: MsaServer) -> None:
    """AI completion (inline completion and the model's completion item) lives in lsp.completion; model-written
    code actions in lsp.ai_actions; "unusual code" hints in lsp.unusual."""
    from lsp import ai_actions, completion, unusual

    completion.register(server)
    if RESTART_WORKER_COMMAND not in server.protocol.fm.commands:  # lsp.completion may register its own
        server.command(RESTART_WORKER_COMMAND)(_restart_worker)
    ai_actions.register(server)
    unusual.register(server)


def _configure_logging(log_file: str | None, level: str) -> None:
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = getattr(logging, str(level).upper(), logging.INFO)
    root.setLevel(numeric)
    # pygls logs every message body at INFO; keep that for --log-level DEBUG only
    logging.getLogger("pygls").setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))


def main(args) -> int:
    _configure_logging(getattr(args, "log_file", None), getattr(args, "log_level", "INFO"))
    _load_extensions(SERVER)
    if getattr(args, "tcp", None):
        host, _, port = args.tcp.rpartition(":")
        SERVER.start_tcp(host or "127.0.0.1", int(port))
    else:
        SERVER.start_io()
    return 0
