"""The first index reports `$/progress` (begin, files done/total, end) and `msa/status` notifications."""

from lsprotocol import types
from pytest_lsp import client_capabilities

from tests.lsp.conftest import SHARED


@SHARED
async def test_progress_and_status_during_first_index(shared_client):
    client = shared_client
    [token] = [t for t in client.progress_reports if str(t).startswith("msa-index")]
    reports = client.progress_reports[token]
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)
    middle = [r for r in reports if isinstance(r, types.WorkDoneProgressReport)]
    assert middle and middle[-1].message.endswith("/8 files")
    statuses = client.events.statuses
    assert statuses[0]["index"]["state"] == "indexing"
    assert statuses[-1]["index"] == {"state": "ready", "files": 8, "done": 8}
    assert statuses[-1]["worker"]["state"] == "off"  # these sessions turn the model features off
    assert set(statuses[-1]["cache"]) == {"segments", "tokens", "filled"}


async def test_requests_are_answered_while_indexing(tmp_path):
    """A workspace big enough that the first index takes a while: an open buffer is served meanwhile, and so is a
    file on disk that the build has not reached (read for the request, not answered as empty)."""
    import asyncio

    from pytest_lsp import ClientServerConfig

    from tests.lsp.conftest import SERVER_COMMAND, NO_MODEL, Events, WAIT_S

    for i in range(600):
        (tmp_path / f"mod_{i}.py").write_text("".join(f"def function_{i}_{j}():\n    return {j}\n\n" for j in range(20)))
    client = await ClientServerConfig(server_command=SERVER_COMMAND).start()
    events = Events()

    @client.feature("msa/status")
    def _status(params):
        events.on_status(params)

    try:
        await client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities("neovim"), root_uri=tmp_path.as_uri(),
            initialization_options={"msa": NO_MODEL}))
        buffer = tmp_path / "open.py"
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=buffer.as_uri(), language_id="python", version=1, text="class Early:\n    def method(self):\n        pass\n")))
        symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
            text_document=types.TextDocumentIdentifier(uri=buffer.as_uri())))
        assert not events.ready.is_set(), "the index finished before the request: make the workspace bigger"
        assert [s.name for s in symbols] == ["Early"] and [c.name for c in symbols[0].children] == ["method"]
        on_disk = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
            text_document=types.TextDocumentIdentifier(uri=(tmp_path / "mod_599.py").as_uri())))
        assert not events.ready.is_set(), "the index finished before the request: make the workspace bigger"
        assert [s.name for s in on_disk] == [f"function_599_{j}" for j in range(20)]
        await asyncio.wait_for(events.ready.wait(), WAIT_S)
        found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="function_599_19"))
        assert [s.name for s in found] == ["function_599_19"]
    finally:
        await client.shutdown_session()
        await client.stop()
