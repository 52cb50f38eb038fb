"""Cross-file refactors computed from the workspace index: rename and "Break import cycle".

Results are plain edits ({absolute path: [(Range, new text)]}, code-point ranges); the server turns
them into a WorkspaceEdit. Every refusal is a RefactorError whose message the user sees. A cycle fix
is only offered after re-extracting the edited text shows the import no longer runs at load time.
Not the place for LSP types or document state.
"""

from __future__ import annotations

import builtins
import keyword
import os
import re
from dataclasses import dataclass

from lsp.index.extract import Source, extract
from lsp.index.languages import language_of, parser
from lsp.index.model import Import, Range

Edits = dict[str, list[tuple[Range, str]]]

KEYWORDS = {  # reserved words only: soft/contextual keywords (match, type, from, async...) are valid names
    "python": set(keyword.kwlist),
    "typescript": {"break", "case", "catch", "class", "const", "continue", "debugger", "default", "delete", "do",
                   "else", "enum", "export", "extends", "false", "finally", "for", "function", "if", "import", "in",
                   "instanceof", "new", "null", "return", "super", "switch", "this", "throw", "true", "try",
                   "typeof", "var", "void", "while", "with", "let", "static", "yield", "await", "implements",
                   "interface", "package", "private", "protected", "public"},
    "go": {"break", "case", "chan", "const", "continue", "default", "defer", "else", "fallthrough", "for", "func",
           "go", "goto", "if", "import", "interface", "map", "package", "range", "return", "select", "struct",
           "switch", "type", "var"},
    "rust": {"as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false",
             "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
             "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while"},
}
BUILTINS = {
    "python": set(dir(builtins)),
    "typescript": {"console", "Math", "Object", "Array", "String", "Number", "Boolean", "Promise", "JSON", "Date",
                   "Error", "Map", "Set", "RegExp", "Symbol", "window", "document", "globalThis", "require",
                   "module", "exports", "process", "parseInt", "parseFloat", "setTimeout", "setInterval",
                   "undefined", "NaN", "Infinity"},
    "go": {"append", "cap", "clear", "close", "complex", "copy", "delete", "imag", "len", "make", "max", "min", "new",
           "panic", "print", "println", "real", "recover", "bool", "byte", "error", "int", "string", "rune", "any",
           "float64", "float32", "int64", "int32", "uint", "uint64", "nil", "iota"},
    "rust": {"Some", "None", "Ok", "Err", "Vec", "String", "Option", "Result", "Box", "println", "format", "vec",
             "panic", "assert", "assert_eq", "i32", "i64", "u8", "u32", "u64", "usize", "f64", "bool", "str"},
}


class RefactorError(Exception):
    """A refactor the user asked for cannot be done; the message says why."""


def _family(language: str | None) -> str:
    return "typescript" if language in ("typescript", "tsx", "javascript") else language or "python"


def check_new_name(name: str, language: str | None) -> None:
    family = _family(language)
    valid = name.isidentifier() if family != "typescript" else bool(re.fullmatch(r"[^\W\d][\w$]*|\$[\w$]*", name))
    if not valid:
        raise RefactorError(f"{name!r} is not a valid identifier")
    if name in KEYWORDS.get(family, ()):
        raise RefactorError(f"{name!r} is a keyword")


def check_renamable(word: str, language: str | None, has_definition: bool) -> None:
    family = _family(language)
    if word in KEYWORDS.get(family, ()):
        raise RefactorError(f"cannot rename the keyword {word!r}")
    if not has_definition and word in BUILTINS.get(family, ()):
        raise RefactorError(f"cannot rename the builtin {word!r}")
    if not has_definition:
        raise RefactorError(f"{word!r} is not defined in this workspace; nothing to rename")


# ---- breaking an import cycle -------------------------------------------------------------------

@dataclass(frozen=True)
class CycleFix:
    title: str
    edits: Edits


def _node_at(root, rng: Range, src: Source):
    """The smallest named node covering the import's range."""
    start = _byte_offset(src, rng.start_line, rng.start_col)
    return root.named_descendant_for_byte_range(start, _byte_offset(src, rng.end_line, rng.end_col))


def _byte_offset(src: Source, line: int, col: int) -> int:
    lines = src.text.split("\n")
    line = min(line, len(lines) - 1)
    return len("\n".join(lines[:line]).encode("utf-8")) + (1 if line else 0) + len(lines[line][:col].encode("utf-8"))


def _statement(node, kinds: set[str]):
    while node is not None and node.type not in kinds:
        node = node.parent
    return node


def _usages(root, locals_: set[str], skip, kinds: set[str]):
    """Identifier nodes spelled like an imported local, outside the import statement itself."""
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.start_byte >= skip.start_byte and node.end_byte <= skip.end_byte and node is not root:
            continue
        if node.type in kinds and node.text.decode("utf-8", "replace") in locals_:
            parent = node.parent
            if not (parent is not None and parent.type == "attribute" and parent.child_by_field_name("attribute") == node) \
                    and not (parent is not None and parent.type == "keyword_argument"
                             and parent.child_by_field_name("name") == node):
                found.append(node)
        stack.extend(node.children)
    return found


def _outer_function_body(node):
    """The body block of the outermost function whose body holds `node`, or None."""
    body = None
    while node.parent is not None:
        parent = node.parent
        if parent.type == "function_definition" and parent.child_by_field_name("body") == node:
            body = node
        node = parent
    return body


def _in_annotation(node) -> bool:
    while node.parent is not None:
        if node.type == "type":
            return True
        node = node.parent
    return False


def _python_import_line(imp: Import) -> str:
    if imp.names:
        names = ", ".join(f"{n.name} as {n.alias}" if n.alias else n.name for n in imp.names)
        return f"from {imp.spec} import {names}"
    return f"import {imp.spec} as {imp.binds}" if imp.binds and imp.binds != imp.spec.split(".")[0] else f"import {imp.spec}"


def _delete_statement(src: Source, stmt) -> tuple[Range, str]:
    """Removes whole lines when the statement is alone on them, else just the statement."""
    sr, er = stmt.start_point[0], stmt.end_point[0]
    lines = src.text.split("\n")
    if not lines[sr][: src.col(sr, stmt.start_point[1])].strip() and not lines[er][src.col(er, stmt.end_point[1]):].strip():
        return Range(sr, 0, er + 1, 0), ""
    return src.range(stmt), ""


def _python_fixes(path: str, text: str, imp: Import, target: str) -> list[tuple[str, list[tuple[Range, str]]]]:
    src = Source(path, text)
    root = parser("python").parse(src.data).root_node
    stmt = _statement(_node_at(root, imp.range, src), {"import_statement", "import_from_statement"})
    if stmt is None or stmt.parent is None or stmt.parent.type != "module" or imp.wildcard:
        return []
    if stmt.type == "import_statement" and len(stmt.children_by_field_name("name")) != 1:
        return []
    locals_ = {n.local for n in imp.names} if imp.names else {imp.binds or imp.spec.split(".")[0]}
    uses = _usages(root, locals_, stmt, {"identifier"})
    if not uses:
        return []
    line = _python_import_line(imp)
    bodies = [_outer_function_body(use) for use in uses]
    if all(bodies):
        edits = [_delete_statement(src, stmt)]
        for body in {b.start_byte: b for b in bodies}.values():
            first = body.named_children[0]
            if _is_docstring(first) and len(body.named_children) > 1:
                first = body.named_children[1]
            if first.start_point[0] == body.parent.start_point[0]:
                return []  # one-line `def f(): ...`: no line to put the import on
            indent = src.text.split("\n")[first.start_point[0]][: src.col(first.start_point[0], first.start_point[1])]
            edits.append((Range(first.start_point[0], 0, first.start_point[0], 0), f"{indent}{line}\n"))
        return [(f"Break import cycle: import {target} inside the functions that use it", edits)]
    if all(_in_annotation(use) for use in uses):
        edits = [(src.range(stmt), f"if TYPE_CHECKING:\n    {line}")]
        header = []
        if not re.search(r"^from __future__ import .*\bannotations\b", text, re.M):
            header.append("from __future__ import annotations\n")
        if not re.search(r"^from typing import .*\bTYPE_CHECKING\b", text, re.M):
            header.append("from typing import TYPE_CHECKING\n")
        if header:
            at = _after_docstring(root)
            prefix = "".join(header) + ("\n" if at else "")
            if (at, 0) == (stmt.start_point[0], stmt.start_point[1]):  # one edit, not two touching ones
                edits = [(edits[0][0], prefix + edits[0][1])]
            else:
                edits.insert(0, (Range(at, 0, at, 0), prefix))
        return [(f"Break import cycle: import {target} only for type checking", edits)]
    return []


def _is_docstring(node) -> bool:
    return node.type == "expression_statement" and bool(node.named_children) and node.named_children[0].type == "string"


def _after_docstring(root) -> int:
    """First line after the module docstring and any `from __future__` imports."""
    line = 0
    for child in root.named_children:
        is_doc = _is_docstring(child)
        is_future = child.type == "future_import_statement"
        if (is_doc and line == 0) or is_future:
            line = child.end_point[0] + 1
            continue
        if child.type != "comment":
            break
    return line


def _ts_fixes(path: str, text: str, language: str, imp: Import, target: str):
    src = Source(path, text)
    root = parser(language).parse(src.data).root_node
    stmt = _statement(_node_at(root, imp.range, src), {"import_statement"})
    if stmt is None or not imp.names and not imp.binds:
        return []
    locals_ = {n.local for n in imp.names} | ({imp.binds} if imp.binds else set())
    uses = _usages(root, locals_, stmt, {"identifier", "type_identifier", "shorthand_property_identifier"})
    if not uses or not all(_ts_type_use(use) for use in uses):
        return []
    keyword_end = stmt.children[0]
    at = src.range(keyword_end)
    return [(f"Break import cycle: import {target} with `import type`",
             [(Range(at.end_line, at.end_col, at.end_line, at.end_col), " type")])]


def _ts_type_use(node) -> bool:
    if node.type == "type_identifier":
        return True
    while node.parent is not None:
        if node.type in ("type_query", "nested_type_identifier", "type_annotation", "type_arguments"):
            return True
        node = node.parent
    return False


def break_cycle_fixes(path: str, text: str, imp: Import, target: str,
                      closing_specs: frozenset[str] = frozenset()) -> list[CycleFix]:
    """Edits that stop `imp` in `path` from running at load time, each checked by re-extracting the
    result: no import spelled like `imp` or like any other import of the same target (`closing_specs`)
    may still run at load time."""
    language = language_of(path)
    if language == "python":
        candidates = _python_fixes(path, text, imp, target)
    elif language in ("typescript", "tsx"):
        if imp.binds and imp.names or any(n.name == "default" for n in imp.names) and len(imp.names) > 1:
            return []  # `import type` may not hold a default import and named bindings at once
        candidates = _ts_fixes(path, text, language, imp, target)
    else:
        return []
    before = extract(path, text, language)
    fixes = []
    for title, edits in candidates:
        after = extract(path, apply_edits(text, edits), language)
        still_runtime = any(i.runtime and i.spec in closing_specs | {imp.spec} for i in after.imports)
        if not still_runtime and len(after.syntax_errors) <= len(before.syntax_errors):
            fixes.append(CycleFix(title, {path: edits}))
    return fixes


def apply_edits(text: str, edits: list[tuple[Range, str]]) -> str:
    """The text with non-overlapping code-point-range edits applied (used to check a fix, and by tests)."""
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)

    def offset(line: int, col: int) -> int:
        if line >= len(lines):
            return len(text)
        return starts[line] + min(col, len(lines[line]))

    for rng, new in sorted(edits, key=lambda e: tuple(e[0]), reverse=True):
        text = text[: offset(rng[0], rng[1])] + new + text[offset(rng[2], rng[3]):]
    return text


def cycle_fixes(index, path: str, text: str | None, start: tuple[int, int], end: tuple[int, int],
                on_diagnostic: bool) -> list[CycleFix]:
    """Fixes for the import that puts `path` on a cycle, when the range touches it or its diagnostic is given."""
    info = index.cycle_of(path)
    if info is None or text is None:
        return []
    rng = info.import_.range
    touches = (rng.start_line, 0) <= end and start <= (rng.end_line, rng.end_col)
    if not (touches or on_diagnostic):
        return []
    cycle = list(info.cycle)
    target = cycle[(cycle.index(path) + 1) % len(cycle)] if path in cycle else cycle[0]
    shown = os.path.relpath(target, index.root).replace(os.sep, "/") if index.root else target
    closing = frozenset(i.spec for i, res in index.imports_of(path) if i.runtime and target in res.targets)
    return break_cycle_fixes(path, text, info.import_, shown, closing)


# ---- references and rename ----------------------------------------------------------------------

@dataclass(frozen=True)
class RenameTarget:
    name: str
    span: Range
    definition: object


def references_at(index, path: str, line: int, col: int, include_declaration: bool) -> list[tuple[str, Range]]:
    found = [(loc.path, loc.range) for loc in index.references(path, line, col)]
    if include_declaration:
        return found
    declarations = {(d.path, d.name_range) for d in index.definition_at(path, line, col)}
    return [ref for ref in found if ref not in declarations]


def rename_target(index, path: str, line: int, col: int) -> RenameTarget:
    hit = index.word_at(path, line, col)
    if hit is None:
        raise RefactorError("no symbol at this position")
    word, span = hit
    definitions = [d for d in index.definition_at(path, line, col) if d.kind != "module"]
    check_renamable(word, index.language(path), bool(definitions))
    return RenameTarget(word, span, definitions[0])


def rename_edits(index, path: str, line: int, col: int, new_name: str) -> Edits:
    """Every occurrence of the symbol under the cursor, across files, spelled `new_name`."""
    target = rename_target(index, path, line, col)
    check_new_name(new_name, index.language(path))
    if new_name == target.name:
        return {}
    edits: Edits = {}
    for location in index.references_to(target.definition):
        rng = location.range
        spelled = index.line_text(location.path, rng.start_line)[rng.start_col:rng.end_col]
        if spelled != target.name:  # a stale or odd location: never write over other text
            continue
        edits.setdefault(location.path, []).append((rng, new_name))
    return edits
