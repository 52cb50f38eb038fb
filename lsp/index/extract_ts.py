"""TypeScript, TSX and JavaScript rules: top-level (and exported) declarations, class members,
ES imports (`import type` marked non-runtime), `export ... from` re-exports and CommonJS
`require("...")` bindings at the top level."""

from __future__ import annotations

from .model import FileFacts, Import, ImportedName

_SIMPLE = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "function_signature": "function",
    "interface_declaration": "interface",
    "type_alias_declaration": "type",
    "enum_declaration": "enum",
    "internal_module": "module",
    "module": "module",
}
_CLASSES = ("class_declaration", "abstract_class_declaration", "class")
_MEMBERS = {"method_definition": "method", "abstract_method_signature": "method", "method_signature": "method",
            "public_field_definition": "variable", "field_definition": "variable"}
_FUNCTION_VALUES = ("arrow_function", "function_expression", "function", "generator_function")


def _string_value(src, node) -> str:
    return src.node_text(node)[1:-1]


def _is_type_only(node) -> bool:
    return any(child.type == "type" for child in node.children[:2])


def _import_statement(src, node) -> Import | None:
    source = node.child_by_field_name("source")
    if source is None:
        return None
    names: list[ImportedName] = []
    binds = ""
    for clause in node.named_children:
        if clause.type != "import_clause":
            continue
        for part in clause.named_children:
            if part.type == "identifier":
                names.append(ImportedName("default", src.node_text(part)))
            elif part.type == "namespace_import":
                ident = next((c for c in part.named_children if c.type == "identifier"), None)
                binds = src.node_text(ident) if ident else ""
            elif part.type == "named_imports":
                for spec in part.named_children:
                    if spec.type == "import_specifier":
                        name, alias = spec.child_by_field_name("name"), spec.child_by_field_name("alias")
                        names.append(ImportedName(src.node_text(name), src.node_text(alias) if alias else ""))
    return Import(_string_value(src, source), tuple(names), binds, src.range(node), src.range(source),
                  not _is_type_only(node))


def _reexport(src, node, source) -> Import:
    names = []
    wildcard = True
    binds = ""
    for part in node.named_children:
        if part.type == "export_clause":
            wildcard = False
            for spec in part.named_children:
                if spec.type == "export_specifier":
                    name, alias = spec.child_by_field_name("name"), spec.child_by_field_name("alias")
                    names.append(ImportedName(src.node_text(name), src.node_text(alias) if alias else ""))
        elif part.type == "namespace_export":
            wildcard = False
            ident = next((c for c in part.named_children if c.type in ("identifier", "string")), None)
            binds = src.node_text(ident) if ident else ""
    return Import(_string_value(src, source), tuple(names), binds, src.range(node), src.range(source),
                  not _is_type_only(node), wildcard, "reexport")


def _require(src, declarator, statement) -> Import | None:
    value = declarator.child_by_field_name("value")
    if value is None or value.type != "call_expression":
        return None
    function, arguments = value.child_by_field_name("function"), value.child_by_field_name("arguments")
    if function is None or src.node_text(function) != "require" or arguments is None:
        return None
    strings = [a for a in arguments.named_children if a.type == "string"]
    if len(strings) != 1:
        return None
    target = declarator.child_by_field_name("name")
    names, binds = [], ""
    if target is not None and target.type == "identifier":
        binds = src.node_text(target)
    elif target is not None and target.type == "object_pattern":
        for part in target.named_children:
            if part.type == "shorthand_property_identifier_pattern":
                names.append(ImportedName(src.node_text(part)))
            elif part.type == "pair_pattern":
                key, value_node = part.child_by_field_name("key"), part.child_by_field_name("value")
                if key is not None and value_node is not None:
                    names.append(ImportedName(src.node_text(key), src.node_text(value_node)))
    return Import(_string_value(src, strings[0]), tuple(names), binds, src.range(statement),
                  src.range(strings[0]), True, False, "require")


def _declarations(src, node, full, facts: FileFacts, container: str) -> None:
    kind = node.type
    if kind in _SIMPLE:
        name = node.child_by_field_name("name")
        if name is not None:
            facts.definitions.append(src.definition(name, full, _SIMPLE[kind], container))
    elif kind in _CLASSES:
        name = node.child_by_field_name("name")
        if name is None:
            return
        cls = src.definition(name, full, "class", container)
        facts.definitions.append(cls)
        body = node.child_by_field_name("body")
        for member in body.named_children if body is not None else ():
            member_kind = _MEMBERS.get(member.type)
            member_name = member.child_by_field_name("name") if member_kind else None
            if member_name is not None:
                facts.definitions.append(src.definition(member_name, member, member_kind, cls.name))
    elif kind in ("lexical_declaration", "variable_declaration"):
        constant = kind == "lexical_declaration" and src.node_text(node).startswith("const")
        for declarator in node.named_children:
            if declarator.type != "variable_declarator":
                continue
            required = _require(src, declarator, node)
            if required is not None:
                facts.imports.append(required)
                continue
            name = declarator.child_by_field_name("name")
            if name is None or name.type != "identifier":
                continue
            value = declarator.child_by_field_name("value")
            def_kind = "function" if value is not None and value.type in _FUNCTION_VALUES else (
                "constant" if constant else "variable")
            facts.definitions.append(src.definition(name, full, def_kind, container))


def _commonjs_export(src, assignment, statement, facts: FileFacts) -> None:
    """`exports.name = ...` and `module.exports.name = ...` define `name`."""
    left = assignment.child_by_field_name("left")
    if left is None or left.type != "member_expression":
        return
    target = left.child_by_field_name("object")
    if target is None or src.node_text(target) not in ("exports", "module.exports"):
        return
    name = left.child_by_field_name("property")
    right = assignment.child_by_field_name("right")
    if name is not None:
        kind = "function" if right is not None and right.type in _FUNCTION_VALUES else "variable"
        facts.definitions.append(src.definition(name, statement, kind, ""))


def collect(src, root, facts: FileFacts) -> None:
    for node in root.named_children:
        kind = node.type
        if kind == "import_statement":
            imp = _import_statement(src, node)
            if imp is not None:
                facts.imports.append(imp)
        elif kind == "export_statement":
            source = node.child_by_field_name("source")
            if source is not None:
                facts.imports.append(_reexport(src, node, source))
                continue
            declaration = node.child_by_field_name("declaration") or node.child_by_field_name("value")
            if declaration is not None:
                _declarations(src, declaration, node, facts, "")
        elif kind == "ambient_declaration":  # `declare ...` in .d.ts files
            for inner in node.named_children:
                _declarations(src, inner, node, facts, "")
        elif kind == "expression_statement" and node.named_children and node.named_children[0].type in _SIMPLE:
            _declarations(src, node.named_children[0], node, facts, "")
        elif kind == "expression_statement" and node.named_children and node.named_children[0].type == "assignment_expression":
            _commonjs_export(src, node.named_children[0], node, facts)
        else:
            _declarations(src, node, node, facts, "")
