"""Rust rules: items (fn, struct, enum, union, trait, type, const, static, macro_rules), inline
modules (descended, container = module name), impl and trait members (container = type or trait),
`mod foo;` declarations (Import kind "mod") and `use` trees flattened to one Import per path
prefix."""

from __future__ import annotations

from collections import defaultdict

from .model import FileFacts, Import, ImportedName

_ITEMS = {"function_item": "function", "function_signature_item": "function", "struct_item": "struct",
          "enum_item": "enum", "union_item": "struct", "trait_item": "trait", "type_item": "type",
          "const_item": "constant", "static_item": "variable", "macro_definition": "macro"}


def _type_name(src, node) -> str:
    while node is not None and node.type in ("generic_type", "reference_type", "scoped_type_identifier"):
        node = node.child_by_field_name("type") or node.child_by_field_name("name")
    return src.node_text(node) if node is not None else ""


def _use_leaves(src, node, prefix: tuple[str, ...]):
    """Yield (path segments, alias, wildcard) for every leaf of a use tree."""
    kind = node.type
    if kind == "use_as_clause":
        path, alias = node.child_by_field_name("path"), node.child_by_field_name("alias")
        yield prefix + tuple(src.node_text(path).split("::")), src.node_text(alias) if alias else "", False
    elif kind == "use_wildcard":
        inner = node.named_children[0] if node.named_children else None
        yield prefix + (tuple(src.node_text(inner).split("::")) if inner is not None else ()), "", True
    elif kind == "scoped_use_list":
        path, items = node.child_by_field_name("path"), node.child_by_field_name("list")
        base = prefix + (tuple(src.node_text(path).split("::")) if path is not None else ())
        for child in items.named_children if items is not None else ():
            yield from _use_leaves(src, child, base)
    elif kind == "use_list":
        for child in node.named_children:
            yield from _use_leaves(src, child, prefix)
    else:
        text = src.node_text(node).replace(" ", "")
        yield prefix + tuple(text.split("::")), "", False


def _use(src, node) -> list[Import]:
    argument = node.child_by_field_name("argument")
    if argument is None:
        return []
    groups: dict[str, list] = defaultdict(list)
    wildcards = []
    for segments, alias, wildcard in _use_leaves(src, argument, ()):
        if wildcard:
            wildcards.append("::".join(segments))
        elif segments and segments[-1] == "self":
            groups["::".join(segments[:-1])].append(None if not alias else alias)
        elif len(segments) == 1:
            groups[segments[0]].append(None if not alias else alias)
        else:
            groups["::".join(segments[:-1])].append(ImportedName(segments[-1], alias))
    rng, arg_rng = src.range(node), src.range(argument)
    out = []
    for spec, members in groups.items():
        names = tuple(m for m in members if isinstance(m, ImportedName))
        binds = next((m if m else spec.split("::")[-1] for m in members if not isinstance(m, ImportedName)), "")
        out.append(Import(spec, names, binds, rng, arg_rng))
    out.extend(Import(spec, (), "", rng, arg_rng, True, True) for spec in wildcards)
    return out


def _walk(src, block, facts: FileFacts, container: str) -> None:
    for node in block.named_children:
        kind = node.type
        if kind in _ITEMS:
            name = node.child_by_field_name("name")
            if name is None:
                continue
            item_kind = _ITEMS[kind]
            if container and kind in ("function_item", "function_signature_item"):
                item_kind = "method"
            facts.definitions.append(src.definition(name, node, item_kind, container))
            if kind == "trait_item":
                body = node.child_by_field_name("body")
                if body is not None:
                    _walk(src, body, facts, src.node_text(name))
        elif kind == "mod_item":
            name = node.child_by_field_name("name")
            body = node.child_by_field_name("body")
            if name is None:
                continue
            if body is None:
                facts.imports.append(Import(src.node_text(name), (), src.node_text(name), src.range(node),
                                            src.range(name), True, False, "mod"))
            else:
                facts.definitions.append(src.definition(name, node, "module", container))
                _walk(src, body, facts, src.node_text(name))
        elif kind == "impl_item":
            body = node.child_by_field_name("body")
            if body is not None:
                _walk(src, body, facts, _type_name(src, node.child_by_field_name("type")))
        elif kind == "use_declaration" and not container:
            facts.imports.extend(_use(src, node))


def collect(src, root, facts: FileFacts) -> None:
    _walk(src, root, facts, "")
