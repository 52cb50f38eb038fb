"""Bad input gets an error response or a logged skip, and the server keeps answering."""

from __future__ import annotations

import json
import subprocess

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from pytest_lsp import ClientServerConfig

from tests.lsp.conftest import NO_MODEL, SERVER_COMMAND, SHARED, at, open_file, start_session, uri


def _frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _message(**fields) -> bytes:
    return _frame(json.dumps({"jsonrpc": "2.0", **fields}).encode())


def _read_message(stream) -> dict:
    length = None
    while True:
        header = stream.readline()
        if not header:
            raise EOFError("server closed its output")
        if header.lower().startswith(b"content-length:"):
            length = int(header.split(b":")[1])
        elif header in (b"\r\n", b"\n") and length is not None:
            return json.loads(stream.read(length))


def test_malformed_json_rpc_over_raw_stdio(tmp_path):
    (tmp_path / "a.py").write_text("def alpha():\n    pass\n")
    server = subprocess.Popen(SERVER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        send = server.stdin
        send.write(_message(id=1, method="initialize", params={"capabilities": {}, "rootUri": tmp_path.as_uri(),
                                                                "initializationOptions": {"msa": NO_MODEL}}))
        send.write(_message(method="initialized", params={}))
        send.write(_frame(b"{this is not json"))                                    # parse error
        send.write(_frame(b'{"jsonrpc": "2.0", "id": 2, "method": "\xff\xfe"}'))   # not UTF-8
        send.write(_message(id=3, method="textDocument/definition", params={"textDocument": 5}))  # bad params
        send.write(_message(id=4, method="msa/noSuchMethod", params={}))           # unknown method
        send.write(b"Garbage-Header: yes\r\n")                                      # stray header line
        send.write(_message(id=5, method="textDocument/documentSymbol",
                            params={"textDocument": {"uri": (tmp_path / "a.py").as_uri()}}))
        send.flush()
        responses = {}
        while 5 not in responses:
            message = _read_message(server.stdout)
            if "id" in message and "method" not in message:
                responses[message["id"]] = message
        assert responses[None]["error"]["code"] == -32700  # JSON-RPC parse error, null id
        assert responses[3]["error"]["code"] == -32602
        assert "textDocument/definition" in responses[3]["error"]["message"]
        assert responses[4]["error"]["code"] == -32601
        assert [s["name"] for s in responses[5]["result"]] == ["alpha"]
    finally:
        server.kill()
        server.wait()


async def test_positions_past_the_end_are_clamped(client):
    app = types.TextDocumentIdentifier(uri=uri(client, "pkg/app.py"))
    far = await client.text_document_definition_async(types.DefinitionParams(
        text_document=app, position=types.Position(line=9999, character=9999)))
    assert far is None
    past_line_end = await client.text_document_definition_async(types.DefinitionParams(
        text_document=app, position=types.Position(line=5, character=500)))  # `    user = User("ada")` -> its end
    assert past_line_end is None
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri(client, "pkg/models.py")),
        range=types.Range(start=types.Position(line=1, character=900), end=types.Position(line=4000, character=3)),
        context=types.CodeActionContext(diagnostics=[])))
    assert actions and actions[0].title.startswith("Break import cycle")
    doc_uri = open_file(client, "pkg/app.py")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=doc_uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=500, character=3), end=types.Position(line=600, character=0)),
            text="\nEXTRA = 1\n")]))
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=app))
    assert [s.name for s in symbols] == ["run", "EXTRA"]


@SHARED
async def test_change_to_unopened_document_is_reported_not_fatal(shared_client):
    client = shared_client
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri(client, "pkg/app.py"), version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="x = 1\n")]))
    await client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
    assert "never opened" in client.messages[-1].message
    result = await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=uri(client, "pkg/app.py")), position=at(client, "pkg/app.py", "User(")))
    assert result[0].uri == uri(client, "pkg/models.py")  # the disk text still counts


async def test_stale_version_change_is_applied_and_published(one_client):
    client = one_client
    doc_uri = open_file(client, "pkg/app.py", version=10)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=doc_uri, version=4),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="import pkg.gone\n")]))
    published = await client.events.diagnostics_where(lambda p: p.uri == doc_uri and p.version == 4)
    assert [d.code for d in published.diagnostics] == ["unresolved-import"]


@SHARED
async def test_unknown_method_gets_method_not_found(shared_client):
    client = shared_client
    with pytest.raises(JsonRpcException, match="Method Not Found"):
        await client.protocol.send_request_async("msa/doesNotExist", {})
    assert await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="User"))


async def test_huge_and_undecodable_files_are_skipped(one_client):
    client = one_client
    huge = client.root / "pkg/huge.py"
    huge.write_text("HUGE = 1\n" + "x = 1\n" * (10 * 1024 * 1024 // 6))
    bad = client.root / "pkg/bad.py"
    bad.write_bytes(b"BAD = '\xff\xfe'\n")
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
        types.FileEvent(uri=huge.as_uri(), type=types.FileChangeType.Created),
        types.FileEvent(uri=bad.as_uri(), type=types.FileChangeType.Created)]))
    symbols = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="HUGE"))
    assert not [s for s in symbols if s.name in ("HUGE", "BAD")]
    huge_doc = open_file(client, "pkg/huge.py")
    shown = await client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
    assert "msa.index.maxFileSize" in client.messages[-1].message
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
        text_document=types.TextDocumentIdentifier(uri=huge_doc)))
    assert not symbols
    assert await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="User"))


async def test_file_deleted_during_indexing(tmp_path):
    """Enough files for the parallel parse; one vanishes at the first progress report."""
    root = tmp_path / "many"
    root.mkdir()
    for i in range(400):
        (root / f"mod_{i}.py").write_text(f"def function_{i}():\n    return {i}\n")
    victim = root / "mod_7.py"
    client = await ClientServerConfig(server_command=SERVER_COMMAND).start()
    features = client.protocol.fm.features
    record_progress = features[types.PROGRESS]

    def _progress(params):
        record_progress(params)
        if params.value and params.value.get("kind") == "report" and victim.exists():
            victim.unlink()

    features[types.PROGRESS] = _progress
    try:
        await start_session(client, "visual-studio-code", root)
        assert not victim.exists()
        client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=victim.as_uri(), type=types.FileChangeType.Deleted)]))
        found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="function_"))
        names = {s.name for s in found}
        assert "function_7" not in names and {"function_6", "function_8"} <= names
    finally:
        await client.shutdown_session()
        await client.stop()
