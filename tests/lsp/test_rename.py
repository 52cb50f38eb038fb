"""prepareRename and rename across files, applied to the files on disk and re-indexed."""

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp.index.extract import identifiers
from lsp.index.workspace import WorkspaceIndex
from tests.lsp.conftest import SHARED, apply_workspace_edit, at, encoding_of, open_file, uri


def _doc(client, relative):
    return types.TextDocumentIdentifier(uri=uri(client, relative))


async def test_rename_class_across_files_and_reparse(client):
    app_uri = open_file(client, "pkg/app.py", version=7)
    position = at(client, "pkg/app.py", "User(")
    prepared = await client.text_document_prepare_rename_async(types.PrepareRenameParams(
        text_document=_doc(client, "pkg/app.py"), position=position))
    assert prepared.placeholder == "User" and prepared.range.start == position
    edit = await client.text_document_rename_async(types.RenameParams(
        text_document=_doc(client, "pkg/app.py"), position=position, new_name="Person"))
    if client.profile == "visual-studio-code":  # versioned documentChanges: open file's version, null otherwise
        versions = {c.text_document.uri: c.text_document.version for c in edit.document_changes}
        assert versions[app_uri] == 7
        assert versions[uri(client, "pkg/models.py")] is None and versions[uri(client, "pkg/service.py")] is None
    else:
        assert edit.document_changes is None and set(edit.changes) == {
            uri(client, p) for p in ("pkg/app.py", "pkg/models.py", "pkg/service.py")}
    apply_workspace_edit(edit, encoding_of(client))

    index = WorkspaceIndex(str(client.root))
    index.build()
    assert index.definitions("User") == []
    [person] = index.definitions("Person")
    assert person.path == str(client.root / "pkg/models.py") and person.kind == "class"
    for relative in ("pkg/app.py", "pkg/models.py", "pkg/service.py"):
        path = client.root / relative
        assert identifiers(str(path), path.read_text(), "python", "User") == [], relative
        assert "syntax-error" not in {d.code for d in index.diagnostics(str(path))}, relative
    assert "user = Person(\"ada\")" in (client.root / "pkg/app.py").read_text()
    assert "from pkg.models import Person, MAX_USERS" in (client.root / "pkg/app.py").read_text()
    assert "def make(self, name) -> Person:" in (client.root / "pkg/service.py").read_text()
    assert len(index.import_cycles()) == 2  # renaming changed no import


@pytest.mark.parametrize("needle, new_name, message", [
    ("def ", "anything", "keyword"),
    ("len(", "length", "builtin"),
    ("Service:", "1abc", "not a valid identifier"),
    ("Service:", "class", "keyword"),
])
@SHARED
async def test_rename_refusals_are_clear_errors(shared_client, needle, new_name, message):
    client = shared_client
    position = at(client, "pkg/service.py", needle)
    with pytest.raises(JsonRpcException, match=message):
        await client.text_document_rename_async(types.RenameParams(
            text_document=_doc(client, "pkg/service.py"), position=position, new_name=new_name))
    if new_name == "anything":
        with pytest.raises(JsonRpcException, match="keyword"):
            await client.text_document_prepare_rename_async(types.PrepareRenameParams(
                text_document=_doc(client, "pkg/service.py"), position=position))
    symbols = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="Service"))
    assert any(s.name == "Service" for s in symbols)  # still serving
