"""The server on the shared multi-language fixture: Python, TypeScript, Go and Rust, plus files it must skip."""

from lsprotocol import types

from tests.lsp.conftest import SHARED, at, client_column, uri

pytestmark = SHARED


def _codes(client, relative):
    return sorted(d.code for d in client.diagnostics.get(uri(client, relative), []))


async def _definition(client, relative, needle, nth=0):
    return await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=uri(client, relative)), position=at(client, relative, needle, nth)))


async def test_diagnostics_in_every_language(multi_client):
    client = multi_client
    assert _codes(client, "py/app/broken.py") == ["syntax-error"]
    assert client.diagnostics[uri(client, "py/app/broken.py")][0].range.start.line == 3
    assert "unresolved-import" in _codes(client, "py/app/util.py")
    for relative in ("py/app/models.py", "py/app/services.py", "py/app/repository.py"):
        assert "import-cycle" in _codes(client, relative), relative
    assert "unresolved-import" in _codes(client, "go/main.go")
    assert "unresolved-import" in _codes(client, "ts/src/main.ts")
    assert "unresolved-import" in _codes(client, "rust/src/lib.rs")


async def test_skipped_files_are_not_served(multi_client):
    client = multi_client
    everything = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query=""))
    files = {s.location.uri for s in everything}
    assert uri(client, "docs/draft_keep.py") in files
    for skipped in ("generated/gen.py", "docs/draft_notes.py", ".env", "assets/logo.png"):
        assert uri(client, skipped) not in files and uri(client, skipped) not in client.diagnostics, skipped


async def test_definitions_across_languages(multi_client):
    client = multi_client
    [go] = await _definition(client, "go/main.go", "New()")
    assert go.uri == uri(client, "go/store/store.go") and go.range.start == at(client, "go/store/store.go", "New()")
    [ts] = await _definition(client, "ts/src/main.ts", "add(1")
    assert ts.uri == uri(client, "ts/src/lib/math.ts")
    [py] = await _definition(client, "py/app/unicode_names.py", "User(\"")
    assert py.uri == uri(client, "py/app/models.py") and py.range.start == at(client, "py/app/models.py", "User:")


async def test_completion_after_a_module_qualifier_lists_its_members(multi_client):
    client = multi_client
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri(client, "py/app/services.py")),
        position=at(client, "py/app/services.py", "load_user")))
    items = {item.label: item for item in result.items}
    assert items["load_user"].detail == "py/app/repository.py"
    assert "UserService" not in items  # the file's own names are not members of `repository`


async def test_rename_follows_typescript_re_exports_and_go_packages(multi_client):
    client = multi_client
    for relative, needle, expected in (
            ("ts/src/lib/math.ts", "add(a", {"ts/src/lib/math.ts", "ts/src/lib/index.ts", "ts/src/main.ts"}),
            ("go/store/store.go", "New()", {"go/store/store.go", "go/main.go"})):
        edit = await client.text_document_rename_async(types.RenameParams(
            text_document=types.TextDocumentIdentifier(uri=uri(client, relative)),
            position=at(client, relative, needle), new_name="renamed"))
        changes = {c.text_document.uri: c.edits for c in edit.document_changes} if edit.document_changes else edit.changes
        files = {u.split("/multi/", 1)[1] for u in changes}
        assert expected <= files, files
        old = needle.split("(")[0]
        for edit_uri, edits in changes.items():
            lines = (client.root / edit_uri.split("/multi/", 1)[1]).read_text().split("\n")
            for text_edit in edits:
                line = lines[text_edit.range.start.line]
                start = client_code_points(client, line, text_edit.range.start.character)
                assert line[start:start + len(old)] == old and text_edit.new_text == "renamed"


def client_code_points(client, line: str, units: int) -> int:
    for index in range(len(line) + 1):
        if client_column(client, line, index) >= units:
            return index
    return len(line)
