"""definition, references, document and workspace symbols, completion through the real server."""

from lsprotocol import types

from tests.lsp.conftest import at, open_file, uri


async def test_definition_across_files(client):
    result = await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=uri(client, "pkg/app.py")), position=at(client, "pkg/app.py", "User(")))
    assert [loc.uri for loc in result] == [uri(client, "pkg/models.py")]
    assert result[0].range.start == at(client, "pkg/models.py", "User")
