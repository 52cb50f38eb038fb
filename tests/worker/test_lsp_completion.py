"""AI completion end to end: a real client (pytest-lsp) -> the server over stdio -> a spawned worker -> the model."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

WAIT_S = 60
UTIL = "def helper(x):\n    return x * 2\n"
APP = "from util import helper\n\n\ndef main():\n    value = helper(3)\n    \n"
CURSOR = types.Position(line=5, character=4)  # the blank, indented line inside main()


class Recorder:
    def __init__(self):
        self.statuses: list[dict] = []
        self.changed = asyncio.Event()

    def on_status(self, params) -> None:
        self.statuses.append(params if isinstance(params, dict) else _plain(params))
        self.changed.set()

    async def until(self, predicate, timeout: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for status in reversed(self.statuses):
                if predicate(status):
                    return status
                break  # only the latest status counts
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"status never matched; last: {self.statuses[-1:]}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


def _plain(obj):
    if hasattr(obj, "_asdict"):  # pygls hands custom notification params over as named tuples
        return {k: _plain(v) for k, v in obj._asdict().items()}
    return {k: _plain(v) for k, v in vars(obj).items()} if hasattr(obj, "__dict__") else obj


def ready_and_filled(files: int):
    return lambda s: s["worker"]["state"] == "ready" and s["cache"]["filled"] == files


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "lsp", "serve"]))
async def client(lsp_client: LanguageClient, tmp_path, tiny_model, request):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "util.py").write_text(UTIL)
    (root / "app.py").write_text(APP)
    lsp_client.root = root
    lsp_client.recorder = recorder = Recorder()

    @lsp_client.feature("msa/status")
    def _status(params):
        recorder.on_status(params)

    param = getattr(request, "param", {})
    max_tokens = param.get("max_tokens", 16)
    capabilities = client_capabilities("neovim")
    if param.get("shows_ghost_text"):
        capabilities.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=capabilities, root_uri=root.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="repo")],
        initialization_options={"msa": {"model": str(tiny_model),
                                        "completion": {"debounceMs": 0, "maxTokens": max_tokens}}}))
    await recorder.until(ready_and_filled(2))
    lsp_client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=(root / "app.py").as_uri(), language_id="python", version=1, text=APP)))
    yield
    await lsp_client.shutdown_session()


def inline_params(client, position=CURSOR, kind=types.InlineCompletionTriggerKind.Invoked):
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=(client.root / "app.py").as_uri()), position=position,
        context=types.InlineCompletionContext(trigger_kind=kind))


async def test_inline_completion_returns_model_text(client: LanguageClient, tiny_model):
    result = await asyncio.wait_for(client.text_document_inline_completion_async(inline_params(client)), WAIT_S)
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert items and items[0].insert_text.strip()
    assert items[0].range.start == items[0].range.end == CURSOR
    popup = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=(client.root / "app.py").as_uri()), position=CURSOR,
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked,
            selected_completion_info=types.SelectedCompletionInfo(range=types.Range(start=CURSOR, end=CURSOR),
                                                                  text="total")))
    extended = (await asyncio.wait_for(client.text_document_inline_completion_async(popup), WAIT_S)).items[0]
    assert extended.insert_text.startswith("total") and len(extended.insert_text) > len("total")
    assert extended.range == types.Range(start=CURSOR, end=CURSOR)
    titles = [report.title for reports in client.progress_reports.values() for report in reports
              if isinstance(report, types.WorkDoneProgressBegin)]
    assert "Filling repository cache" in titles
    status = client.recorder.statuses[-1]
    assert status["cache"]["segments"] >= 2 and status["cache"]["tokens"] > 0 and status["worker"]["model"]

    listed = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=(client.root / "app.py").as_uri()), position=CURSOR))
    ai = [item for item in listed.items if item.detail == "msa-lsp model"]
    assert len(ai) == 1 and ai[0].text_edit.new_text.strip()

    tokens = client.recorder.statuses[-1]["cache"]["tokens"]
    util = client.root / "util.py"
    util.write_text(UTIL + "".join(f"\ndef extra_{i}(y):\n    return y - {i}\n" for i in range(20)))
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
        types.FileEvent(uri=util.as_uri(), type=types.FileChangeType.Changed)]))
    await client.recorder.until(lambda s: s["cache"]["tokens"] > tokens + 100 and s["cache"]["segments"] == 2)

    automatic = inline_params(client, kind=types.InlineCompletionTriggerKind.Automatic)
    result = await asyncio.wait_for(client.text_document_inline_completion_async(automatic), WAIT_S)
    assert result.items and result.items[0].insert_text.strip()
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"msa": {"model": str(tiny_model), "inlineCompletion": {"enable": False}}}))
    await asyncio.sleep(0.2)
    assert await client.text_document_inline_completion_async(automatic) is None
    await client.recorder.until(lambda s: s["worker"]["state"] == "off")

    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"msa": {"model": str(client.root / "no-such-model")}}))
    await asyncio.sleep(0.2)
    with pytest.raises(JsonRpcException, match="no-such-model"):
        await client.text_document_inline_completion_async(inline_params(client))
    status = await client.recorder.until(lambda s: s["worker"]["state"] == "error")
    assert "config.json" in status["worker"]["message"]


@pytest.mark.parametrize("client", [{"shows_ghost_text": True}], indirect=True)
async def test_clients_with_ghost_text_get_no_duplicate_completion_item(client: LanguageClient):
    result = await asyncio.wait_for(client.text_document_inline_completion_async(inline_params(client)), WAIT_S)
    assert result.items and result.items[0].insert_text.strip()
    listed = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=(client.root / "app.py").as_uri()), position=CURSOR))
    assert listed.items and not [item for item in listed.items if item.detail == "msa-lsp model"]


async def test_a_member_of_an_imported_repository_module_is_one_it_defines(client: LanguageClient):
    calls = client.root / "calls.py"
    text = "import util\n\n\ndef main():\n    return util."
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=calls.as_uri(), language_id="python", version=1, text=text)))
    end = types.Position(line=4, character=len("    return util."))
    result = await asyncio.wait_for(client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=calls.as_uri()), position=end,
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))), WAIT_S)
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert items and items[0].insert_text.startswith("helper")  # util.py's only function
    assert not items[0].insert_text[len("helper"):][:1].isidentifier()


def send(client, params, msg_id: str) -> asyncio.Task:
    """Sends an inlineCompletion request now (pytest-lsp sends only once the coroutine runs)."""
    return asyncio.ensure_future(client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params,
                                                                    msg_id=msg_id))


@pytest.mark.parametrize("client", [{"max_tokens": 1500}], indirect=True)
async def test_cancelled_or_outdated_requests_return_no_stale_text(client: LanguageClient):
    protocol = client.protocol
    long_running = send(client, inline_params(client), "long-1")
    await asyncio.sleep(0.5)
    cancelled_at = time.monotonic()
    protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="long-1"))
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(long_running, 10)
    # the worker stopped decoding: a new request is not stuck behind 1500 tokens of the old one
    first = send(client, inline_params(client), "a")
    await asyncio.sleep(0.3)
    second = send(client, inline_params(client), "b")
    with pytest.raises(JsonRpcRequestCancelled):  # cancel-previous for the same document
        await asyncio.wait_for(first, 10)
    await asyncio.sleep(0.3)
    uri = (client.root / "app.py").as_uri()
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0)),
            text="# edited\n")]))
    assert await asyncio.wait_for(second, 20) is None  # written for version 1; the buffer is at version 2
    assert time.monotonic() - cancelled_at < 15


def _worker_pids(server_pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server_pid and b"worker" in cmdline:
            found.append(int(entry))
    return found


async def test_killed_worker_restarts_while_index_features_keep_working(client: LanguageClient):
    pids = _worker_pids(client._server.pid)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    await client.recorder.until(lambda s: s["worker"]["state"] in ("restarting", "starting", "error"))

    uri = (client.root / "app.py").as_uri()
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=APP + "oops = (\n")]))
    deadline = time.monotonic() + WAIT_S
    while not any(d.severity == types.DiagnosticSeverity.Error for d in client.diagnostics.get(uri, [])):
        assert time.monotonic() < deadline, "no syntax error published while the worker was down"
        await asyncio.sleep(0.05)
    edit = await client.text_document_rename_async(types.RenameParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=0, character=18),
        new_name="assist"))
    changed = edit.changes or {change.text_document.uri: change.edits for change in edit.document_changes}
    assert {uri, (client.root / "util.py").as_uri()} <= set(changed)

    await client.recorder.until(ready_and_filled(2))
    assert _worker_pids(client._server.pid) != pids
    result = await asyncio.wait_for(client.text_document_inline_completion_async(inline_params(client)), WAIT_S)
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert items and items[0].insert_text.strip()


async def test_restart_worker_command_brings_up_a_fresh_worker(client: LanguageClient):
    pids = _worker_pids(client._server.pid)
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="msa.restartWorker"))
    await client.recorder.until(lambda s: s["worker"]["state"] in ("starting", "restarting"))
    await client.recorder.until(ready_and_filled(2))
    assert _worker_pids(client._server.pid) not in ([], pids)
    result = await asyncio.wait_for(client.text_document_inline_completion_async(inline_params(client)), WAIT_S)
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert items and items[0].insert_text.strip()
