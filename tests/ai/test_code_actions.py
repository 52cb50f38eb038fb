"""Model-written code actions through a real client: offered on the right ranges, resolved lazily into
WorkspaceEdits that apply and parse, refused with a reason when the model's proposal does not parse."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp.edit_check import parse_errors
from tests.ai.conftest import (APP, UTIL_EDITED, UTIL_SAVED, WAIT_S, applied, generate_log, open_file, open_session,
                               write_repo)


def actions_at(client, uri: str, line: int, character: int = 0, diagnostics=()) -> list[types.CodeAction]:
    position = types.Position(line=line, character=character)
    return client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=types.Range(start=position, end=position),
        context=types.CodeActionContext(diagnostics=list(diagnostics))))


def model_actions(found) -> list[types.CodeAction]:
    return [a for a in found or [] if isinstance(a, types.CodeAction) and a.data and "msa" in a.data]


def client_diagnostic(line: int, start: int, end: int, message: str) -> types.Diagnostic:
    return types.Diagnostic(range=types.Range(start=types.Position(line=line, character=start),
                                              end=types.Position(line=line, character=end)),
                            message=message, source="a linter")


async def test_actions_are_offered_on_their_ranges_and_resolve_to_parsing_edits(client, plain_worker, tmp_path):
    root = write_repo(tmp_path / "repo")
    await open_session(client, root, plain_worker, profile="visual-studio-code", tags=True, reasoning="disabled")
    util = open_file(client, "util.py", UTIL_EDITED)  # helper gained a parameter; not saved yet
    await asyncio.sleep(0.3)

    on_area = model_actions(await actions_at(client, util, 7, 4))  # inside the stub `area`
    assert [a.title for a in on_area] == ["Implement `area` with the model"]
    assert on_area[0].edit is None and list(on_area[0].tags) == [types.CodeActionTag.LlmGenerated]
    on_helper = model_actions(await actions_at(client, util, 0, 5))
    assert [a.title for a in on_helper] == ["Apply this change of `helper` to every caller"]
    assert model_actions(await actions_at(client, util, 2, 4)) == []  # helper's body is no stub

    implement = await asyncio.wait_for(client.code_action_resolve_async(on_area[0]), WAIT_S)
    change = implement.edit.document_changes[0]
    assert change.text_document.uri == util and change.text_document.version == 1
    assert all(e.annotation_id == "msa.model-edit" for e in change.edits)
    annotation = implement.edit.change_annotations["msa.model-edit"]
    assert annotation.needs_confirmation is True and "without reasoning" in annotation.description
    written = applied(implement.edit, {util: UTIL_EDITED})[util]
    assert written.startswith(UTIL_EDITED.rsplit("    ...", 1)[0]) and "    ...\n" not in written
    assert parse_errors(str(root / "util.py"), written) == []

    callers = await asyncio.wait_for(client.code_action_resolve_async(on_helper[0]), WAIT_S)
    touched = {c.text_document.uri: c for c in callers.edit.document_changes}
    assert set(touched) == {(root / "app.py").as_uri(), (root / "report.py").as_uri()}
    assert all(c.text_document.version is None for c in touched.values())  # not open in the editor
    app_edit, = touched[(root / "app.py").as_uri()].edits
    assert (app_edit.range.start.line, app_edit.range.start.character, app_edit.range.end.character) == (4, 12, 21)
    report_edit, = touched[(root / "report.py").as_uri()].edits
    assert (report_edit.range.start.line, report_edit.range.start.character) == (4, 15)  # util.helper(i)
    assert callers.edit.change_annotations["msa.model-edit"].needs_confirmation
    for uri, text in applied(callers.edit, {}).items():
        assert parse_errors(uri.removeprefix("file://"), text) == []
    asked = [entry for entry in generate_log(plain_worker) if entry["path"] in ("app.py", "report.py")]
    assert {entry["path"] for entry in asked} >= {"app.py", "report.py"}  # one request per call site


async def test_a_proposal_that_does_not_parse_is_refused_with_its_reason(client, plain_worker, tmp_path):
    root = write_repo(tmp_path / "repo")
    await open_session(client, root, plain_worker, profile="neovim", reasoning="disabled")
    app = open_file(client, "app.py", APP)
    await asyncio.sleep(0.3)
    # a keyword argument line inside dict(...): a model line of bare words cannot stand there
    inside_call = client_diagnostic(6, 8, 19, "prefer a constant for the name")
    found = model_actions(await actions_at(client, app, 6, 8, [inside_call]))
    fix = next(a for a in found if a.kind == types.CodeActionKind.QuickFix)
    assert fix.title.startswith("Fix with the model: prefer a constant") and list(fix.diagnostics) == [inside_call]
    assert fix.tags is None  # Neovim's capabilities do not list the LLM-generated tag
    with pytest.raises(JsonRpcException) as refused:
        await asyncio.wait_for(client.code_action_resolve_async(fix), WAIT_S)
    assert "does not parse" in str(refused.value) and "app.py:8:9" in str(refused.value)  # `size=3` can no longer follow
    shown = [m.message for m in client.messages if "does not parse" in m.message]
    assert shown, client.messages

    # on a whole statement line a proposal of words parses and is offered (neovim: plain `changes`)
    statement = client_diagnostic(4, 4, 21, "value is computed twice")
    fix = next(a for a in model_actions(await actions_at(client, app, 4, 4, [statement]))
               if a.kind == types.CodeActionKind.QuickFix)
    resolved = await asyncio.wait_for(client.code_action_resolve_async(fix), WAIT_S)
    edit, = resolved.edit.changes[app]
    assert edit.range.start == types.Position(line=4, character=4) and edit.range.end.line == 4
    assert "\n" not in edit.new_text and edit.new_text.strip()
    text = applied(resolved.edit, {app: APP})[app]
    assert parse_errors(str(root / "app.py"), text) == []


async def test_resolve_refuses_a_stale_document(client, plain_worker, tmp_path):
    root = write_repo(tmp_path / "repo")
    await open_session(client, root, plain_worker, profile="visual-studio-code", reasoning="disabled")
    util = open_file(client, "util.py", UTIL_SAVED)
    await asyncio.sleep(0.3)
    implement, = model_actions(await actions_at(client, util, 7, 4))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=util, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=UTIL_SAVED + "\n")]))
    with pytest.raises(JsonRpcException) as stale:
        await asyncio.wait_for(client.code_action_resolve_async(implement), WAIT_S)
    assert "changed since this action was offered" in str(stale.value)
    again = await actions_at(client, util, 7, 4)  # the server keeps serving
    assert model_actions(again)
