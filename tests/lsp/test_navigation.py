"""definition, references, document and workspace symbols, completion through the real server."""

from lsprotocol import types

from tests.lsp.conftest import SHARED, at, uri

pytestmark = SHARED


def _doc(client, relative):
    return types.TextDocumentIdentifier(uri=uri(client, relative))


async def test_definition_across_files(shared_client):
    client = shared_client
    result = await client.text_document_definition_async(types.DefinitionParams(
        text_document=_doc(client, "pkg/app.py"), position=at(client, "pkg/app.py", "User(")))
    assert [loc.uri for loc in result] == [uri(client, "pkg/models.py")]
    assert result[0].range.start == at(client, "pkg/models.py", "User")


async def test_references_honour_include_declaration(shared_client):
    client = shared_client
    position = at(client, "pkg/models.py", "User")

    async def refs(include):
        result = await client.text_document_references_async(types.ReferenceParams(
            text_document=_doc(client, "pkg/models.py"), position=position,
            context=types.ReferenceContext(include_declaration=include)))
        return {(loc.uri, loc.range.start.line, loc.range.start.character) for loc in result}

    with_decl, without = await refs(True), await refs(False)
    declaration = (uri(client, "pkg/models.py"), position.line, position.character)
    assert declaration in with_decl and declaration not in without
    assert with_decl - without == {declaration}
    files = {u.rsplit("/", 1)[1] for u, _, _ in with_decl}
    assert files == {"models.py", "app.py", "service.py"}
    app_use = at(client, "pkg/app.py", "User(")
    assert (uri(client, "pkg/app.py"), app_use.line, app_use.character) in without


async def test_document_symbols_are_hierarchical(shared_client):
    client = shared_client
    result = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
        text_document=_doc(client, "pkg/models.py")))
    by_name = {s.name: s for s in result}
    assert set(by_name) == {"User", "MAX_USERS"}
    assert by_name["User"].kind == types.SymbolKind.Class
    assert [c.name for c in by_name["User"].children] == ["__init__", "greet"]
    assert by_name["User"].selection_range.start == at(client, "pkg/models.py", "User")


async def test_workspace_symbol_search(shared_client):
    client = shared_client
    result = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="Servi"))
    service = [s for s in result if s.name == "Service"]
    assert service and service[0].location.uri == uri(client, "pkg/service.py")
    assert service[0].location.range.start == at(client, "pkg/service.py", "Service:")


async def test_completion_offers_workspace_symbols_in_scope(shared_client):
    client = shared_client
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=_doc(client, "pkg/app.py"), position=at(client, "pkg/app.py", "user.greet")))
    items = {item.label: item for item in result.items}
    assert items["User"].kind == types.CompletionItemKind.Class
    assert items["User"].detail == "pkg/models.py"
    assert items["MAX_USERS"].detail == "pkg/models.py"
    assert items["run"].detail == "pkg/app.py"
    assert "Service" not in items  # not imported into app.py
