"""Where model-made edits go, found with tree-sitter: stub function bodies, signatures, call expressions.

For a function (named by its name's range from the index) this finds its signature text and, when its body is
a stub (empty, `pass`, `...`, `raise NotImplementedError`, `todo!()`, a not-implemented throw/panic, or only
comments such as TODO), the span a new body replaces. For a reference it finds the enclosing call expression.
Positions are 0-based lines and code-point columns (lsp.index.Range).

Non-job: asking the model, building prompts (lsp.ai_actions) and checking edits (lsp.edit_check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lsp.index.extract import Source
from lsp.index.languages import parser
from lsp.index.model import Range

FUNCTION_TYPES = {"function_definition", "function_declaration", "method_definition", "method_declaration",
                  "function_item", "arrow_function", "function_expression", "generator_function_declaration",
                  "function"}
CALL_TYPES = {"call", "call_expression"}
QUALIFIER_TYPES = {"attribute", "member_expression", "selector_expression", "scoped_identifier", "field_expression"}
COMMENT_TYPES = {"comment", "line_comment", "block_comment"}
STUB = re.compile(r"""^(pass|\.\.\.|raise\s+NotImplementedError(\(.*\))?|todo!\(.*\)|unimplemented!\(.*\)
                   |panic\(.*(?i:implement|todo).*\)|throw\s+new\s+Error\(.*(?i:implement|todo).*\);?)$""", re.X | re.S)


@dataclass(frozen=True)
class FunctionShape:
    signature: str  # the header up to the body, whitespace collapsed
    stub: bool  # the body is a stub that "Implement this function" may replace
    body_range: Range  # what a new body replaces (after the docstring / inside the braces)
    indent: str  # indentation of the body's lines
    lead: str  # text before the model's body inside body_range ("\n" or ""): the body starts a line
    trail: str  # text put after it (the closing brace's line start, for brace languages)
    header_line: int
    body_line: int  # where the body starts (the signature is on header_line up to this line)


@dataclass(frozen=True)
class CallSite:
    range: Range  # the whole call expression
    text: str


def _byte_point(text: str, line: int, column: int) -> tuple[int, int]:
    lines = text.split("\n")
    row = lines[line] if line < len(lines) else ""
    return line, len(row[:column].encode("utf-8", "surrogatepass"))


def _node_at(src: Source, language: str, line: int, column: int):
    tree = parser(language).parse(src.data)
    point = _byte_point(src.text, line, column)
    return tree.root_node.named_descendant_for_point_range(point, point)


def _function_node(node):
    while node is not None:
        if node.type in FUNCTION_TYPES:
            return node
        if node.type == "variable_declarator":
            value = node.child_by_field_name("value")
            if value is not None and value.type in FUNCTION_TYPES:
                return value
        node = node.parent
    return None


def _line_indent(text: str, line: int) -> str:
    row = text.split("\n")[line]
    return row[: len(row) - len(row.lstrip(" \t"))]


def function_shape(path: str, text: str, language: str, name_range: Range) -> FunctionShape | None:
    """The function whose name is at name_range: signature, and whether (and where) its body is a stub."""
    src = Source(path, text)
    node = _function_node(_node_at(src, language, name_range.start_line, name_range.start_col))
    if node is None:
        return None
    body = node.child_by_field_name("body")
    if body is None:
        return None
    header = src.data[node.start_byte: body.start_byte].decode("utf-8", "replace")
    signature = " ".join(header.split()).rstrip(" :{")
    def_line = src.range(node).start_line
    def_indent = _line_indent(text, def_line)
    statements = [child for child in body.named_children if child.type not in COMMENT_TYPES]
    if language == "python":
        docstring = None
        if statements and statements[0].type == "expression_statement" and statements[0].named_children and \
                statements[0].named_children[0].type == "string":
            docstring = statements.pop(0)
        indent = _line_indent(text, src.range(body).start_line) if src.range(body).start_line > def_line \
            else def_indent + "    "
        whole = src.range(body)
        if docstring is not None:
            start = src.range(docstring)
            body_range, lead = Range(start.end_line, start.end_col, whole.end_line, whole.end_col), "\n"
        elif whole.start_line > def_line:  # from the start of the body's first line
            body_range, lead = Range(whole.start_line, 0, whole.end_line, whole.end_col), ""
        else:  # `def f(): pass`
            body_range, lead = whole, "\n"
        trail = ""
    else:
        if body.type in ("statement_block", "block") and src.node_text(body).startswith("{"):
            whole = src.range(body)
            body_range = Range(whole.start_line, whole.start_col + 1, whole.end_line, whole.end_col - 1)
        else:  # an arrow function's expression body: not a stub shape we replace
            return FunctionShape(signature, False, src.range(body), def_indent, "", "", def_line,
                                 src.range(body).start_line)
        tabs = def_indent.startswith("\t") or language == "go" or text.count("\n\t") > text.count("\n    ")
        unit = "\t" if tabs else "    "
        indent = def_indent + unit
        lead, trail = "\n", "\n" + def_indent
    stub = all(STUB.match(src.node_text(child).strip()) for child in statements)
    return FunctionShape(signature, stub, body_range, indent, lead, trail, def_line, src.range(body).start_line)


def call_site(path: str, text: str, language: str, name_range: Range) -> CallSite | None:
    """The call expression whose callee ends at the name at name_range (a plain or qualified call); else None."""
    src = Source(path, text)
    node = _node_at(src, language, name_range.start_line, name_range.start_col)
    while node is not None and node.parent is not None and node.parent.type in QUALIFIER_TYPES:
        node = node.parent
    parent = node.parent if node is not None else None
    if parent is None or parent.type not in CALL_TYPES or parent.child_by_field_name("function") != node:
        return None
    return CallSite(src.range(parent), src.node_text(parent))


def body_from_model(raw: str, shape: FunctionShape) -> str:
    """The model's body (written from the start of a line) cut where it leaves the body (a line indented less
    than the body), trimmed; a first line indented less than the body is moved to the body's indentation."""
    lines = raw.replace("\r\n", "\n").lstrip("\n").split("\n")
    first = lines[0]
    kept = [first if first.startswith(shape.indent) else shape.indent + first.lstrip(" \t")]
    for line in lines[1:]:
        if line.strip() and not line.startswith(shape.indent):
            break
        kept.append(line)
    return "\n".join(kept).rstrip()
