"""Pure conversions between the index's view of code and LSP types.

The index counts columns in Unicode code points (Python str indices); a client counts them in its
negotiated encoding (utf-16 by default, utf-8 or utf-32). Every column crossing that border goes
through `to_client_column` / `to_server_column` here and nowhere else. Positions past the end of a
line or of the text are clamped, as LSP says ("defaults back to the line length"). Not the place for
state, I/O or protocol handling.
"""

from __future__ import annotations

from typing import Sequence

from lsprotocol import types

UTF8, UTF16, UTF32 = types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf32


def _units(char: str, encoding: str) -> int:
    code = ord(char)
    if encoding == UTF8:
        return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    if encoding == UTF16:
        return 2 if code >= 0x10000 else 1
    return 1


def text_units(text: str, encoding: str) -> int:
    """Length of `text` in the encoding's code units."""
    if encoding == UTF32 or text.isascii():
        return len(text)
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for char in text if ord(char) >= 0x10000)


def to_client_column(line: str, column: int, encoding: str) -> int:
    """Code-point column on `line` -> client units; clamped to the line's end."""
    column = max(0, min(column, len(line)))
    if encoding == UTF32 or line.isascii():
        return column
    return text_units(line[:column], encoding)


def to_server_column(line: str, units: int, encoding: str) -> int:
    """Client-unit column on `line` -> code points; past the end -> line length; inside a character -> its start."""
    units = max(0, units)
    if encoding == UTF32 or line.isascii():
        return min(units, len(line))
    seen = 0
    for index, char in enumerate(line):
        width = _units(char, encoding)
        if seen + width > units:
            return index
        seen += width
    return len(line)


def split_lines(text: str) -> list[str]:
    """Lines as LSP counts them (\\n, \\r\\n and \\r end a line), without their terminators."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def to_server_position(lines: Sequence[str], position: types.Position, encoding: str) -> tuple[int, int]:
    """(line, code-point column) for a client position, clamped into the text."""
    if not lines:
        return 0, 0
    if position.line >= len(lines):
        return len(lines) - 1, len(lines[-1])
    line = max(0, position.line)
    return line, to_server_column(lines[line], position.character, encoding)


def to_client_position(lines: Sequence[str], line: int, column: int, encoding: str) -> types.Position:
    """Client position for a (line, code-point column), clamped into the text."""
    if not lines:
        return types.Position(line=0, character=0)
    if line >= len(lines):
        return types.Position(line=len(lines) - 1, character=text_units(lines[-1], encoding))
    line = max(0, line)
    return types.Position(line=line, character=to_client_column(lines[line], column, encoding))


def to_client_range(lines: Sequence[str], start: tuple[int, int], end: tuple[int, int], encoding: str) -> types.Range:
    return types.Range(start=to_client_position(lines, *start, encoding), end=to_client_position(lines, *end, encoding))


def offset_of(lines: Sequence[str], line: int, column: int) -> int:
    """String offset of a clamped (line, code-point column) in the text `"\\n".join(lines)`."""
    line = max(0, min(line, len(lines) - 1))
    return sum(len(text) + 1 for text in lines[:line]) + max(0, min(column, len(lines[line])))


def apply_change(text: str, lines: Sequence[str], change: types.TextDocumentContentChangeEvent, encoding: str) -> str:
    """The text after one didChange content change (incremental with a range, or whole-document)."""
    if not isinstance(change, types.TextDocumentContentChangePartial):
        return change.text
    start = to_server_position(lines, change.range.start, encoding)
    end = to_server_position(lines, change.range.end, encoding)
    if end < start:
        start, end = end, start
    return text[: _raw_offset(text, lines, *start)] + change.text + text[_raw_offset(text, lines, *end):]


def _raw_offset(text: str, lines: Sequence[str], line: int, column: int) -> int:
    """Offset in `text` itself, which may use \\r\\n or \\r line ends (split_lines dropped them)."""
    if "\r" not in text:
        return offset_of(lines, line, column)
    offset = 0
    for _ in range(line):
        newline = text.find("\n", offset)
        carriage = text.find("\r", offset)
        ends = [i for i in (newline, carriage) if i >= 0]
        if not ends:
            return len(text)
        first = min(ends)
        offset = first + (2 if text.startswith("\r\n", first) else 1)
    return offset + max(0, min(column, len(lines[line])))


SYMBOL_KINDS = {
    "function": types.SymbolKind.Function, "method": types.SymbolKind.Method, "class": types.SymbolKind.Class,
    "struct": types.SymbolKind.Struct, "interface": types.SymbolKind.Interface, "trait": types.SymbolKind.Interface,
    "enum": types.SymbolKind.Enum, "type": types.SymbolKind.TypeParameter, "module": types.SymbolKind.Module,
    "constant": types.SymbolKind.Constant, "variable": types.SymbolKind.Variable,
}
COMPLETION_KINDS = {
    "function": types.CompletionItemKind.Function, "method": types.CompletionItemKind.Method,
    "class": types.CompletionItemKind.Class, "struct": types.CompletionItemKind.Struct,
    "interface": types.CompletionItemKind.Interface, "trait": types.CompletionItemKind.Interface,
    "enum": types.CompletionItemKind.Enum, "type": types.CompletionItemKind.TypeParameter,
    "module": types.CompletionItemKind.Module, "constant": types.CompletionItemKind.Constant,
    "variable": types.CompletionItemKind.Variable,
}
SEVERITIES = {
    "error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information, "hint": types.DiagnosticSeverity.Hint,
}
DIAGNOSTIC_SOURCE = "msa-lsp"


def index_range(lines: Sequence[str], span, encoding: str) -> types.Range:
    """An index Range (start_line, start_col, end_line, end_col in code points) in client units."""
    return to_client_range(lines, (span[0], span[1]), (span[2], span[3]), encoding)


def location(uri: str, lines: Sequence[str], span, encoding: str) -> types.Location:
    return types.Location(uri=uri, range=index_range(lines, span, encoding))


def diagnostic(lines: Sequence[str], found, encoding: str) -> types.Diagnostic:
    """An index Diagnostic (range, severity, code, message) as an LSP Diagnostic."""
    return types.Diagnostic(range=index_range(lines, found.range, encoding), message=found.message,
                            severity=SEVERITIES.get(found.severity, types.DiagnosticSeverity.Error),
                            code=found.code, source=DIAGNOSTIC_SOURCE)


def document_symbols(lines: Sequence[str], symbols, encoding: str) -> list[types.DocumentSymbol]:
    """The index's symbol tree (definition + children) as hierarchical DocumentSymbols."""
    out = []
    for symbol in symbols:
        definition = symbol.definition
        out.append(types.DocumentSymbol(
            name=definition.name, kind=SYMBOL_KINDS.get(definition.kind, types.SymbolKind.Variable),
            range=index_range(lines, definition.full_range, encoding),
            selection_range=index_range(lines, definition.name_range, encoding),
            detail=definition.container or None,
            children=document_symbols(lines, symbol.children, encoding)))
    return out
