"""Checks a model-proposed edit before it is offered: apply it to the text, parse the result with tree-sitter.

An edit is refused when the edited text has syntax errors (ERROR or MISSING nodes) that the original text did
not have: more of them, or any touching the lines the edit wrote. The reason names the first such error with a
1-based line, so a user (and the log) can see why an action was not offered.

Non-job: asking the model (lsp.ai_actions) and converting to LSP types (lsp.workspace_state).
"""

from __future__ import annotations

from dataclasses import dataclass

from lsp.index.extract import Source, syntax_errors
from lsp.index.languages import language_of, parser
from lsp.index.model import Range


@dataclass(frozen=True)
class CheckedEdit:
    ok: bool
    reason: str  # why it was refused ("" when ok)
    text: str  # the text with the edits applied


def offset_of(text: str, line: int, column: int) -> int:
    """Code-point offset of a 0-based (line, column) in text (clamped to the text)."""
    offset = 0
    for _ in range(line):
        found = text.find("\n", offset)
        if found < 0:
            return len(text)
        offset = found + 1
    end = text.find("\n", offset)
    return min(offset + column, len(text) if end < 0 else end)


def apply_edits(text: str, edits: list[tuple[Range, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Text with the non-overlapping edits applied, and the written spans as 0-based line ranges (first, last)."""
    spans = sorted(((offset_of(text, r.start_line, r.start_col), offset_of(text, r.end_line, r.end_col), new)
                    for r, new in edits), key=lambda item: item[0])
    for (_, end, _), (start, _, _) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError("overlapping edits")
    pieces, cursor, written, shift_lines = [], 0, [], 0
    for start, end, new in spans:
        pieces.append(text[cursor:start])
        first = text.count("\n", 0, start) + shift_lines
        written.append((first, first + new.count("\n")))
        shift_lines += new.count("\n") - text.count("\n", start, end)
        pieces.append(new)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces), written


def parse_errors(path: str, text: str, language: str | None = None) -> list[tuple[Range, str]]:
    language = language or language_of(path)
    if language is None:
        raise ValueError(f"no grammar for {path}")
    src = Source(path, text)
    return syntax_errors(src, parser(language).parse(src.data).root_node)


def check_edits(path: str, text: str, edits: list[tuple[Range, str]], language: str | None = None) -> CheckedEdit:
    """Applies `edits` to `text` and parses the result; refuses edits that add syntax errors."""
    language = language or language_of(path)
    if language is None:
        return CheckedEdit(False, f"{path}: no tree-sitter grammar to check the edit with", text)
    try:
        new_text, written = apply_edits(text, edits)
    except ValueError as exc:
        return CheckedEdit(False, f"{path}: {exc}", text)
    before = parse_errors(path, text, language)
    after = parse_errors(path, new_text, language)
    touching = [(rng, message) for rng, message in after
                if any(first <= rng.start_line <= last + 1 for first, last in written)]
    if touching or len(after) > len(before):
        rng, message = (touching or after)[0]
        return CheckedEdit(False, f"the proposed edit does not parse ({path}:{rng.start_line + 1}:"
                                  f"{rng.start_col + 1}: {message})", new_text)
    return CheckedEdit(True, "", new_text)
