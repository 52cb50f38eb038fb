"""Diagnostics pushed per file: syntax errors, unresolved imports, import cycles; versions and debounce."""

from lsprotocol import types
from pytest_lsp import client_capabilities

from tests.lsp.conftest import SHARED, open_file, uri


def _codes(client, relative):
    return sorted(d.code for d in client.diagnostics.get(uri(client, relative), []))


def _change(client, doc_uri, version, start, end, text):
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=doc_uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=start[0], character=start[1]),
                              end=types.Position(line=end[0], character=end[1])), text=text)]))


@SHARED
async def test_first_index_publishes_every_kind(shared_client):
    client = shared_client
    assert _codes(client, "pkg/broken.py") == ["syntax-error"]
    assert _codes(client, "pkg/app.py") == ["unresolved-import"]
    for relative in ("pkg/models.py", "pkg/service.py", "web/types.ts", "web/view.ts"):
        assert _codes(client, relative) == ["import-cycle"], relative
    cycle = client.diagnostics[uri(client, "pkg/service.py")][0]
    assert cycle.message == "import cycle: pkg/models.py -> pkg/service.py -> pkg/models.py"
    unresolved = client.diagnostics[uri(client, "pkg/app.py")][0]
    assert (unresolved.range.start.line, unresolved.range.start.character, unresolved.range.end.character) == (1, 5, 16)
    assert "pkg/text.py" not in {u.split("/workspace/")[1] for u in client.diagnostics if client.diagnostics[u]}


async def test_edits_republish_with_their_version(client):
    doc_uri = open_file(client, "pkg/app.py")
    _change(client, doc_uri, 2, (1, 0), (2, 0), "")  # drop the unresolved import
    fixed = await client.events.diagnostics_where(lambda p: p.uri == doc_uri and p.version == 2)
    assert list(fixed.diagnostics) == []
    _change(client, doc_uri, 3, (0, 0), (0, 0), "def oops(:\n")
    broken = await client.events.diagnostics_where(lambda p: p.uri == doc_uri and p.version == 3)
    assert [d.code for d in broken.diagnostics] == ["syntax-error"]
    assert broken.diagnostics[0].range.start.line == 0


async def test_quick_edits_publish_only_the_latest_version(client):
    doc_uri = open_file(client, "pkg/app.py")
    _change(client, doc_uri, 2, (0, 0), (0, 0), "# a\n")
    _change(client, doc_uri, 3, (0, 0), (0, 0), "# b\n")
    latest = await client.events.diagnostics_where(lambda p: p.uri == doc_uri and p.version == 3)
    assert [d.code for d in latest.diagnostics] == ["unresolved-import"]
    assert latest.diagnostics[0].range.start.line == 3  # two comment lines were inserted above
    assert not [p for p in client.events.published if p.uri == doc_uri and p.version == 2]


async def test_edit_that_breaks_a_cycle_republishes_the_other_file(client):
    doc_uri = open_file(client, "pkg/service.py")
    text = (client.root / "pkg/service.py").read_text()
    _change(client, doc_uri, 2, (0, 0), (0, len(text.split("\n")[0])), "User = None")
    models = uri(client, "pkg/models.py")
    cleared = await client.events.diagnostics_where(lambda p: p.uri == models and not p.diagnostics)
    assert cleared.version is None  # models.py is not open
    mine = await client.events.diagnostics_where(lambda p: p.uri == doc_uri and p.version == 2)
    assert list(mine.diagnostics) == []


async def test_closing_a_buffer_falls_back_to_disk(one_client):
    client = one_client
    doc_uri = open_file(client, "pkg/app.py")
    _change(client, doc_uri, 2, (1, 0), (2, 0), "")  # the buffer drops the unresolved import ...
    await client.events.diagnostics_where(lambda p: p.uri == doc_uri and p.version == 2 and not p.diagnostics)
    since = len(client.events.published)
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=doc_uri)))
    # ... but it was never saved, so the file on disk (with the import) counts again
    back = await client.events.diagnostics_where(
        lambda p: p.uri == doc_uri and p.version is None and [d.code for d in p.diagnostics] == ["unresolved-import"],
        since)
    assert back.diagnostics[0].range.start.line == 1


async def test_deleting_a_module_flags_its_importers(one_client):
    client = one_client
    models = client.root / "pkg/models.py"
    models.unlink()
    since = len(client.events.published)
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
        changes=[types.FileEvent(uri=models.as_uri(), type=types.FileChangeType.Deleted)]))
    app = await client.events.diagnostics_where(lambda p: p.uri == uri(client, "pkg/app.py"), since)
    assert [d.message for d in app.diagnostics if "pkg.models" in d.message]
    service = await client.events.diagnostics_where(lambda p: p.uri == uri(client, "pkg/service.py"), since)
    assert [d.code for d in service.diagnostics] == ["unresolved-import"]  # and no cycle any more


async def test_without_a_workspace_folder_open_files_still_get_diagnostics(tmp_path):
    from pytest_lsp import ClientServerConfig

    from tests.lsp.conftest import SERVER_COMMAND, NO_MODEL, Events

    lonely = tmp_path / "lonely.py"
    lonely.write_text("def f(:\n    pass\n")
    client = await ClientServerConfig(server_command=SERVER_COMMAND).start()
    try:
        events = Events()
        features = client.protocol.fm.features
        record = features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]
        features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = lambda p: (record(p), events.on_publish(p))
        await client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities("neovim"), initialization_options={"msa": NO_MODEL}))
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=lonely.as_uri(), language_id="python", version=1, text=lonely.read_text())))
        found = await events.diagnostics_where(lambda p: p.uri == lonely.as_uri() and p.version == 1)
        assert [d.code for d in found.diagnostics] == ["syntax-error"]
        assert any("no workspace folder" in m.message for m in client.messages)
    finally:
        await client.shutdown_session()
        await client.stop()
