"""Reasoning modes as the worker saw them: for a one-line fix and a multi-file caller update, what each
generate request asked (reasoning on/off) and whether the model reasoned, read from the worker's stats."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.ai.conftest import APP, UTIL_EDITED, WAIT_S, generate_log, open_file, open_session, write_repo
from tests.ai.test_code_actions import actions_at, client_diagnostic, model_actions

EXPECTED = {"enabled": (True, True), "adaptive": (False, True), "disabled": (False, False)}


async def _fix_and_callers(client, root, override: str | None = None):
    """Resolves a one-line fix in app.py and the caller update of util.helper; returns both actions."""
    app = open_file(client, "app.py", APP)
    util = open_file(client, "util.py", UTIL_EDITED)
    await asyncio.sleep(0.3)
    statement = client_diagnostic(4, 4, 21, "value is computed twice")
    fix = next(a for a in model_actions(await actions_at(client, app, 4, 4, [statement]))
               if a.kind == types.CodeActionKind.QuickFix)
    callers, = model_actions(await actions_at(client, util, 0, 5))
    if override:
        fix.data["msa"]["reasoning"] = callers.data["msa"]["reasoning"] = override
    resolved_fix = await asyncio.wait_for(client.code_action_resolve_async(fix), WAIT_S)
    resolved_callers = await asyncio.wait_for(client.code_action_resolve_async(callers), WAIT_S)
    return fix, callers, resolved_fix, resolved_callers


def _asked(worker, since: int) -> tuple[list[dict], list[dict]]:
    entries = generate_log(worker)[since:]
    fixes = [e for e in entries if e["path"] == "app.py" and "Fix this problem" in e["instruction"]]
    calls = [e for e in entries if "Rewrite this call" in e["instruction"]]
    return fixes, calls


@pytest.mark.parametrize("mode", ["enabled", "adaptive", "disabled"])
async def test_each_mode_asks_the_worker_for_reasoning_or_not(client, thinking_worker, tmp_path, mode):
    root = write_repo(tmp_path / "repo")
    before = len(generate_log(thinking_worker))
    await open_session(client, root, thinking_worker, profile="visual-studio-code", reasoning=mode)
    fix, callers, resolved_fix, resolved_callers = await _fix_and_callers(client, root)
    fixes, calls = _asked(thinking_worker, before)
    assert len(fixes) == 1 and len(calls) == 2  # app.py's helper(3) and report.py's util.helper(i)
    want_fix, want_callers = EXPECTED[mode]
    assert fixes[0]["reasoning_requested"] is want_fix and fixes[0]["reasoning_used"] is want_fix
    assert all(c["reasoning_requested"] is want_callers and c["reasoning_used"] is want_callers for c in calls)
    assert all((e["thought_chars"] > 0) is e["reasoning_used"] for e in fixes + calls)  # it did think first
    assert ("(with reasoning)" in fix.title) is want_fix and ("(with reasoning)" in callers.title) is want_callers
    how = resolved_callers.edit.change_annotations["msa.model-edit"].description
    assert ("the model reasoned first" in how) is want_callers


async def test_the_request_override_wins_over_the_setting(client, thinking_worker, tmp_path):
    root = write_repo(tmp_path / "repo")
    before = len(generate_log(thinking_worker))
    await open_session(client, root, thinking_worker, profile="visual-studio-code", reasoning="enabled")
    await _fix_and_callers(client, root, override="disabled")
    fixes, calls = _asked(thinking_worker, before)
    assert [e["reasoning_requested"] for e in fixes + calls] == [False, False, False]

    # inline completion never reasons: it never sends a generate request
    count = len(generate_log(thinking_worker))
    await asyncio.wait_for(client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=(root / "app.py").as_uri()),
        position=types.Position(line=9, character=4),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))), WAIT_S)
    assert len(generate_log(thinking_worker)) == count


async def test_enabled_without_a_thinking_template_falls_back_visibly(client, plain_worker, tmp_path):
    root = write_repo(tmp_path / "repo")
    before = len(generate_log(plain_worker))
    await open_session(client, root, plain_worker, profile="visual-studio-code", reasoning="enabled")
    fix, callers, _, resolved_callers = await _fix_and_callers(client, root)
    assert fix.title.endswith("(reasoning unavailable with this model)")
    assert callers.title.endswith("(reasoning unavailable with this model)")
    description = resolved_callers.edit.change_annotations["msa.model-edit"].description
    assert "reasoning unavailable: the model has no chat template" in description
    shown = [m.message for m in client.messages if "reasoning was asked for but is unavailable" in m.message]
    assert len(shown) == 1  # once per session, not per request
    fixes, calls = _asked(plain_worker, before)
    assert all(e["reasoning_requested"] and not e["reasoning_used"] for e in fixes + calls) and len(calls) == 2


async def test_the_model_edit_command_takes_a_reasoning_override_and_applies_the_edit(client, thinking_worker,
                                                                                       tmp_path):
    root = write_repo(tmp_path / "repo")
    applied_edits = []

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def _apply(params: types.ApplyWorkspaceEditParams):
        applied_edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    await open_session(client, root, thinking_worker, profile="visual-studio-code", reasoning="disabled")
    app = open_file(client, "app.py", APP)
    await asyncio.sleep(0.3)
    statement = client_diagnostic(4, 4, 21, "value is computed twice")
    fix = next(a for a in model_actions(await actions_at(client, app, 4, 4, [statement]))
               if a.kind == types.CodeActionKind.QuickFix)
    before = len(generate_log(thinking_worker))
    result = await asyncio.wait_for(client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="msa.modelEdit", arguments=[fix.data["msa"], "enabled"])), WAIT_S)
    assert result["applied"] is True
    edit, = applied_edits
    assert edit.label == "msa-lsp model edit" and edit.edit.document_changes[0].text_document.uri == app
    asked = generate_log(thinking_worker)[before:]
    assert [(e["reasoning_requested"], e["reasoning_used"]) for e in asked] == [(True, True)]
    with pytest.raises(JsonRpcException, match="reasoning must be"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="msa.modelEdit", arguments=[fix.data["msa"], "always"]))
