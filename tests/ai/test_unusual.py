"""'Unusual code' hints through a real client: computed from the worker's scores after edits settle, following
the text as it changes, and absent while msa.diagnostics.unusualCode is off (the default)."""

from __future__ import annotations

import asyncio
import time

from lsprotocol import types

from lsp.unusual import line_kind, line_scores, rank
from tests.ai.conftest import open_file, open_session, write_repo

ODD = "zqxvjkwzqxvjkwpqzq"  # a name no tokenizer merges: many improbable tokens
SOURCE = "from util import helper\n\n\ndef main():\n    value = helper(3)\n    other = helper(value)\n" \
         f"    extra = helper({ODD})\n    return value, other, extra\n"


async def hints_when(client, uri: str, predicate, timeout: float = 30.0) -> list[types.Diagnostic]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in client.diagnostics.get(uri, []) if d.code == "unusual-code"]
        if predicate(found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"hints never matched; now {client.diagnostics.get(uri)}")


async def test_unusual_line_gets_a_hint_that_follows_edits(client, plain_worker, tmp_path):
    root = write_repo(tmp_path / "repo")
    await open_session(client, root, plain_worker, profile="neovim",
                       extra={"diagnostics": {"unusualCode": True, "debounceMs": 50}})
    uri = open_file(client, "main.py", SOURCE)
    found = await hints_when(client, uri, lambda hints: bool(hints))
    odd = next(d for d in found if d.range.start.line == 6)
    assert odd.severity == types.DiagnosticSeverity.Hint and odd.source == "msa-lsp model"
    column = SOURCE.split("\n")[6].index(ODD)
    assert (odd.range.start.character, odd.range.end.character) == (column, column + len(ODD))
    assert f"`{ODD}`" in odd.message and "standard deviations above similar lines" in odd.message

    moved = SOURCE.replace(f"helper({ODD})", "helper(value)").replace("    value = helper(3)",
                                                                       f"    value = helper({ODD})")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=moved)]))
    # the old hint goes with the text it was about, and a new run finds the name on its new line
    await hints_when(client, uri, lambda hints: all(d.range.start.line != 6 for d in hints))
    found = await hints_when(client, uri, lambda hints: any(d.range.start.line == 4 for d in hints))
    assert all(d.range.start.line != 6 for d in found)


async def test_no_hints_while_the_setting_is_off(client, plain_worker, tmp_path):
    root = write_repo(tmp_path / "repo")
    await open_session(client, root, plain_worker, profile="neovim")
    uri = open_file(client, "main.py", SOURCE)
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    await asyncio.sleep(1.5)  # longer than the settle time of a run
    assert not [d for d in client.diagnostics.get(uri, []) if d.code == "unusual-code"]


def test_line_scores_skip_new_bindings_and_rank_against_same_kind_lines():
    text = "total = 0\nfor item in items:\n    total = total + item\n    total = totl + item\n"
    tokens = []  # one token per character, 1 nat each; the misspelled `totl` gets 20 nats more
    for offset, char in enumerate(text):
        tokens.append((char, offset, -(21.0 if text.startswith("totl", offset) else 1.0)))
    scores = {s.line: s for s in line_scores(text, tokens)}
    assert all(word != "total" for word, *_ in scores[0].words)  # bound here first: not counted
    assert scores[3].words[0][0] == "totl" and scores[3].surprisal > scores[2].surprisal
    assert line_kind("    total = totl + item") == "assign" and line_kind("for x in y:") == "for"
    ranked = rank(list(scores.values()), [])
    assert ranked[0].line == 3 and ranked[0].z > 0
