"""A real msa-lsp server over stdio, driven by pytest-lsp's client with VS Code's and Neovim's
capabilities, on a copy of a fixture workspace (tests may edit it)."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SHARED_FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"  # the index's multi-language workspaces
SERVER_COMMAND = [sys.executable, "-m", "lsp", "serve", "--log-level", "INFO"]
PROFILES = ["visual-studio-code", "neovim"]
WAIT_S = 20


class Events:
    """Notifications the tests wait on, recorded as they arrive (no sleeps)."""

    def __init__(self):
        self.statuses: list[dict] = []
        self.ready = asyncio.Event()
        self.published: list[types.PublishDiagnosticsParams] = []
        self._publish_waiters: list[tuple[object, asyncio.Future]] = []

    def on_status(self, params) -> None:
        status = params if isinstance(params, dict) else _as_dict(params)
        self.statuses.append(status)
        if status["index"]["state"] == "ready":
            self.ready.set()

    def on_publish(self, params: types.PublishDiagnosticsParams) -> None:
        self.published.append(params)
        for predicate, future in list(self._publish_waiters):
            if not future.done() and predicate(params):
                future.set_result(params)

    async def diagnostics_where(self, predicate, since: int = 0) -> types.PublishDiagnosticsParams:
        """The first publishDiagnostics matching `predicate` among those received from index `since` on
        (already here or still to come)."""
        for params in self.published[since:]:
            if predicate(params):
                return params
        future = asyncio.get_running_loop().create_future()
        self._publish_waiters.append((predicate, future))
        return await asyncio.wait_for(future, WAIT_S)


def _as_dict(obj):
    """pygls hands custom notification params over as nested named tuples."""
    if hasattr(obj, "_asdict"):
        return {k: _as_dict(v) for k, v in obj._asdict().items()}
    return obj


def copy_fixture(name: str, dest: pathlib.Path, base: pathlib.Path = FIXTURES) -> pathlib.Path:
    root = dest / name
    shutil.copytree(base / name, root)
    return root


# These tests are about the server's own features: no model, so no worker process is started.
NO_MODEL = {"inlineCompletion": {"enable": False}}


async def start_session(client: LanguageClient, profile: str, root: pathlib.Path, options: dict | None = None) -> Events:
    options = {"msa": {**NO_MODEL, **(options or {}).get("msa", {})}}
    events = Events()
    client.events = events

    @client.feature("msa/status")
    def _status(params):
        events.on_status(params)

    features = client.protocol.fm.features
    record_diagnostics = features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]

    def _publish(params):
        record_diagnostics(params)
        events.on_publish(params)

    features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = _publish

    client.init_result = await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities(profile), root_uri=root.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        initialization_options=options))
    await asyncio.wait_for(events.ready.wait(), WAIT_S)
    return events


@pytest_lsp.fixture(params=PROFILES, config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(request, lsp_client: LanguageClient, tmp_path):
    root = copy_fixture("workspace", tmp_path)
    lsp_client.root = root
    lsp_client.profile = request.param
    await start_session(lsp_client, request.param, root)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND))
async def one_client(lsp_client: LanguageClient, tmp_path):
    """Like `client`, VS Code profile only: for behaviour that does not depend on the client's capabilities."""
    root = copy_fixture("workspace", tmp_path)
    lsp_client.root = root
    lsp_client.profile = "visual-studio-code"
    await start_session(lsp_client, "visual-studio-code", root)
    yield
    await lsp_client.shutdown_session()


# Read-only tests share one session per module and profile (they must not edit files or buffers);
# such tests run on the module's event loop: mark them with SHARED.
SHARED = pytest.mark.asyncio(loop_scope="module")


@pytest_lsp.fixture(params=PROFILES, scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def shared_client(request, lsp_client: LanguageClient, tmp_path_factory):
    root = copy_fixture("workspace", tmp_path_factory.mktemp("shared"))
    lsp_client.root = root
    lsp_client.profile = request.param
    await start_session(lsp_client, request.param, root)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(params=PROFILES, scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def multi_client(request, lsp_client: LanguageClient, tmp_path_factory):
    """A session on a copy of tests/fixtures/multi (Python, TS, Go, Rust, ignored/secret/binary files)."""
    root = copy_fixture("multi", tmp_path_factory.mktemp("multi"), SHARED_FIXTURES)
    lsp_client.root = root
    lsp_client.profile = request.param
    await start_session(lsp_client, request.param, root)
    yield
    await lsp_client.shutdown_session()


def uri(client: LanguageClient, relative: str) -> str:
    return (client.root / relative).as_uri()


def open_file(client: LanguageClient, relative: str, text: str | None = None, version: int = 1) -> str:
    path = client.root / relative
    text = path.read_text() if text is None else text
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=path.as_uri(), language_id="python" if relative.endswith(".py") else "typescript", version=version, text=text)))
    return path.as_uri()


def client_column(client: LanguageClient, line: str, code_points: int) -> int:
    """A code-point column in the units the server chose for this client."""
    prefix = line[:code_points]
    if client.profile == "neovim":  # Neovim offers utf-8 first; pygls takes the client's first choice
        return len(prefix.encode("utf-8"))
    return len(prefix.encode("utf-16-le")) // 2


def at(client: LanguageClient, relative: str, needle: str, nth: int = 0, offset: int = 0) -> types.Position:
    """The client position of the `nth` occurrence of `needle` in a fixture file (+offset code points)."""
    lines = (client.root / relative).read_text().split("\n")
    seen = 0
    for number, line in enumerate(lines):
        start = line.find(needle)
        while start >= 0:
            if seen == nth:
                return types.Position(line=number, character=client_column(client, line, start + offset))
            seen += 1
            start = line.find(needle, start + 1)
    raise AssertionError(f"{needle!r} #{nth} not in {relative}")


def apply_workspace_edit(edit: types.WorkspaceEdit, encoding: str) -> dict[str, str]:
    """Writes a WorkspaceEdit's text edits to disk as an editor would; returns {uri: new text}."""
    per_uri: dict[str, list[types.TextEdit]] = {}
    if edit.document_changes:
        for change in edit.document_changes:
            per_uri.setdefault(change.text_document.uri, []).extend(change.edits)
    for edit_uri, edits in (edit.changes or {}).items():
        per_uri.setdefault(edit_uri, []).extend(edits)
    written = {}
    for edit_uri, edits in per_uri.items():
        path = pathlib.Path(edit_uri.removeprefix("file://"))
        text = path.read_text()
        for text_edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
            start = _offset(text, text_edit.range.start, encoding)
            end = _offset(text, text_edit.range.end, encoding)
            text = text[:start] + text_edit.new_text + text[end:]
        path.write_text(text)
        written[edit_uri] = text
    return written


def _offset(text: str, position: types.Position, encoding: str) -> int:
    lines = text.split("\n")
    if position.line >= len(lines):
        return len(text)
    line = lines[position.line]
    units = 0
    for index, char in enumerate(line):
        if units >= position.character:
            return sum(len(x) + 1 for x in lines[: position.line]) + index
        units += len(char.encode("utf-8")) if encoding == "utf-8" else len(char.encode("utf-16-le")) // 2
    return sum(len(x) + 1 for x in lines[: position.line]) + len(line)


def encoding_of(client: LanguageClient) -> str:
    return client.init_result.capabilities.position_encoding
