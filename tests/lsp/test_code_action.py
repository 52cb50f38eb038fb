"""The "Break import cycle" code action: offered only where it honestly breaks the edge."""

from lsprotocol import types

from lsp.index.workspace import WorkspaceIndex
from tests.lsp.conftest import SHARED, apply_workspace_edit, encoding_of, uri


async def _actions(client, relative, line):
    diagnostics = [d for d in client.diagnostics.get(uri(client, relative), []) if d.code == "import-cycle"]
    return await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri(client, relative)),
        range=types.Range(start=types.Position(line=line, character=0), end=types.Position(line=line, character=0)),
        context=types.CodeActionContext(diagnostics=diagnostics)))


def _cycles(root):
    index = WorkspaceIndex(str(root))
    index.build()
    return [[p.removeprefix(str(root) + "/") for p in cycle] for cycle in index.import_cycles()]


async def test_python_cycle_becomes_function_local_import(client):
    [action] = await _actions(client, "pkg/models.py", 1)
    assert action.kind == types.CodeActionKind.QuickFix and action.title.startswith("Break import cycle")
    assert action.diagnostics and action.diagnostics[0].code == "import-cycle"
    apply_workspace_edit(action.edit, encoding_of(client))
    text = (client.root / "pkg/models.py").read_text()
    assert "    def greet(self):\n        from pkg.service import Service\n" in text
    assert not text.split("\n")[1].startswith("from pkg.service")
    assert _cycles(client.root) == [["web/types.ts", "web/view.ts"]]

    models = uri(client, "pkg/models.py")
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
        changes=[types.FileEvent(uri=models, type=types.FileChangeType.Changed)]))
    cleared = await client.events.diagnostics_where(lambda p: p.uri == models and not p.diagnostics)
    assert cleared.version is None


async def test_typescript_cycle_becomes_import_type(client):
    [action] = await _actions(client, "web/view.ts", 0)
    apply_workspace_edit(action.edit, encoding_of(client))
    assert (client.root / "web/view.ts").read_text().startswith('import type { Props } from "./types";\n')
    assert _cycles(client.root) == [["pkg/models.py", "pkg/service.py"]]


@SHARED
async def test_no_action_where_the_import_is_needed_at_load_time(shared_client):
    client = shared_client
    # service.py uses User in a signature annotation evaluated at def time and in a body: no honest fix
    assert not await _actions(client, "pkg/service.py", 0)
    # types.ts calls render() at run time: `import type` would break it
    assert not await _actions(client, "web/types.ts", 0)


@SHARED
async def test_only_filters_by_kind(shared_client):
    client = shared_client

    async def actions(only):
        return await client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri(client, "pkg/models.py")),
            range=types.Range(start=types.Position(line=1, character=0), end=types.Position(line=1, character=0)),
            context=types.CodeActionContext(diagnostics=[], only=only)))

    assert [a.kind for a in await actions(["refactor"])] == [types.CodeActionKind.RefactorRewrite]
    assert await actions(["refactor.extract"]) is None
    assert await actions(["source"]) is None
