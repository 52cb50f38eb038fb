"""Columns on lines with emoji and CJK: utf-16 for VS Code, utf-8 for Neovim (its first offer)."""

from lsprotocol import types

from tests.lsp.conftest import SHARED, at, client_column, open_file, uri

LINE = 4  # label = "😀 你好 🎉"; total = add_numbers(1, 2)


@SHARED
async def test_negotiated_encoding(shared_client):
    client = shared_client
    expected = "utf-8" if client.profile == "neovim" else "utf-16"
    assert client.init_result.capabilities.position_encoding == expected


@SHARED
async def test_columns_after_emoji_and_cjk(shared_client):
    client = shared_client
    line = (client.root / "pkg/text.py").read_text().split("\n")[LINE]
    position = at(client, "pkg/text.py", "add_numbers", nth=1)
    assert position.character == client_column(client, line, line.index("add_numbers"))
    assert position.character != line.index("add_numbers")  # the units really differ from code points
    result = await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=uri(client, "pkg/text.py")), position=position))
    assert result[0].range.start == types.Position(line=0, character=4)
    refs = await client.text_document_references_async(types.ReferenceParams(
        text_document=types.TextDocumentIdentifier(uri=uri(client, "pkg/text.py")), position=position,
        context=types.ReferenceContext(include_declaration=False)))
    [ref] = refs
    assert ref.range.start == position
    assert ref.range.end.character == client_column(client, line, line.index("add_numbers") + len("add_numbers"))


async def test_incremental_edit_after_emoji(client):
    doc_uri = open_file(client, "pkg/text.py")
    line = (client.root / "pkg/text.py").read_text().split("\n")[LINE]
    start = line.index("total")
    edit_range = types.Range(start=types.Position(line=LINE, character=client_column(client, line, start)),
                             end=types.Position(line=LINE, character=client_column(client, line, start + len("total"))))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=doc_uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(range=edit_range, text="grand_total")]))
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
        text_document=types.TextDocumentIdentifier(uri=doc_uri)))
    [grand] = [s for s in symbols if s.name == "grand_total"]
    new_line = line.replace("total =", "grand_total =")
    assert grand.selection_range.start == types.Position(line=LINE, character=client_column(client, new_line, start))
    assert not [s for s in symbols if s.name == "total"]
