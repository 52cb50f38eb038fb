"""Python rules: module/class-level definitions and every import statement (function-local and
TYPE_CHECKING imports are marked non-runtime, so they never close an import cycle)."""

from __future__ import annotations

import re

from .model import FileFacts, Import, ImportedName

_CLAUSES = {"block", "else_clause", "elif_clause", "except_clause", "except_group_clause", "finally_clause"}
_IMPORT_LINE = re.compile(rb"^([ \t]*)(?:import|from)[ \t]", re.MULTILINE)
_COMPOUND = {"if_statement", "try_statement", "with_statement"}


def _is_type_checking(if_node, src) -> bool:
    condition = if_node.child_by_field_name("condition")
    return condition is not None and src.node_text(condition) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _imports_of(src, node, runtime: bool) -> list[Import]:
    rng = src.range(node)
    out = []
    if node.type == "import_statement":
        for child in node.named_children:
            if child.type == "aliased_import":
                dotted, alias = child.child_by_field_name("name"), child.child_by_field_name("alias")
                spec = src.node_text(dotted)
                out.append(Import(spec, (), src.node_text(alias), rng, src.range(dotted), runtime))
            elif child.type == "dotted_name":
                spec = src.node_text(child)
                out.append(Import(spec, (), spec.split(".")[0], rng, src.range(child), runtime))
        return out
    module = node.child_by_field_name("module_name")
    if module is None:
        return out
    names = []
    wildcard = False
    for child in node.named_children:
        if child == module:
            continue
        if child.type == "wildcard_import":
            wildcard = True
        elif child.type == "aliased_import":
            names.append(ImportedName(src.node_text(child.child_by_field_name("name")),
                                      src.node_text(child.child_by_field_name("alias"))))
        elif child.type == "dotted_name":
            names.append(ImportedName(src.node_text(child)))
    out.append(Import(src.node_text(module), tuple(names), "", rng, src.range(module), runtime, wildcard))
    return out


def _assignment_targets(statement):
    for expr in statement.named_children:
        while expr.type == "assignment":
            left = expr.child_by_field_name("left")
            if left is None:
                break
            if left.type == "identifier":
                yield left
            elif left.type in ("pattern_list", "tuple_pattern", "list_pattern"):
                yield from (n for n in left.named_children if n.type == "identifier")
            expr = expr.child_by_field_name("right")
            if expr is None:
                break


def _walk(src, block, facts: FileFacts, container: str, runtime: bool, seen: set) -> None:
    for node in block.named_children:
        full = node
        if node.type == "decorated_definition":
            node = node.child_by_field_name("definition") or node
        kind = node.type
        if kind == "function_definition":
            name = node.child_by_field_name("name")
            if name is not None:
                facts.definitions.append(src.definition(name, full, "method" if container else "function", container))
        elif kind == "class_definition":
            name = node.child_by_field_name("name")
            if name is not None:
                cls = src.definition(name, full, "class", container)
                facts.definitions.append(cls)
                body = node.child_by_field_name("body")
                if body is not None:
                    _walk(src, body, facts, cls.name, runtime, seen)
        elif kind == "expression_statement":
            for target in _assignment_targets(node):
                text = src.node_text(target)
                constant = text.isupper() or (text.lstrip("_").isupper() and len(text) > 1)
                facts.definitions.append(src.definition(target, node, "constant" if constant else "variable",
                                                        container, text))
        elif kind in ("import_statement", "import_from_statement"):
            seen.add(node.start_byte)
            facts.imports.extend(_imports_of(src, node, runtime))
        elif kind in _COMPOUND:
            type_checking = kind == "if_statement" and _is_type_checking(node, src)
            for child in node.named_children:
                if child.type in _CLAUSES:
                    target = child if child.type == "block" else child.child_by_field_name("body")
                    if target is None:
                        target = next((c for c in child.named_children if c.type == "block"), None)
                    if target is not None:
                        # only the `if TYPE_CHECKING:` body itself is not run
                        inner_runtime = runtime and not (type_checking and child.type == "block")
                        _walk(src, target, facts, container, inner_runtime, seen)


def collect(src, root, facts: FileFacts) -> None:
    seen: set[int] = set()
    _walk(src, root, facts, "", True, seen)
    # imports the walk did not reach (inside functions): find each unseen import line's statement
    for match in _IMPORT_LINE.finditer(src.data):
        start = match.start() + len(match.group(1))
        if start in seen:
            continue
        node = root.descendant_for_byte_range(start, start + 1)
        while node is not None and node.type not in ("import_statement", "import_from_statement"):
            if node.start_byte != start:
                node = None
                break
            node = node.parent
        if node is not None and node.start_byte not in seen:
            seen.add(node.start_byte)
            facts.imports.extend(_imports_of(src, node, False))
    facts.imports.sort(key=lambda imp: imp.range)
