"""Go rules: package clause, functions, methods (container = receiver type), type declarations
(struct, interface, other types and aliases), package-level const/var, and imports."""

from __future__ import annotations

from .model import FileFacts, Import

_TYPE_KINDS = {"struct_type": "struct", "interface_type": "interface"}


def _receiver_type(src, method) -> str:
    receiver = method.child_by_field_name("receiver")
    for param in receiver.named_children if receiver is not None else ():
        node = param.child_by_field_name("type")
        while node is not None and node.type in ("pointer_type", "generic_type", "parenthesized_type"):
            node = node.child_by_field_name("type") or (node.named_children[0] if node.named_children else None)
        if node is not None:
            return src.node_text(node)
    return ""


def _specs(node, spec_type: str):
    for child in node.named_children:
        if child.type == spec_type:
            yield child
        elif child.type.endswith("_list"):
            yield from _specs(child, spec_type)


def _import(src, spec) -> Import | None:
    path = spec.child_by_field_name("path")
    if path is None:
        return None
    value = src.node_text(path).strip('"`')
    alias = spec.child_by_field_name("name")
    alias_text = src.node_text(alias) if alias is not None else ""
    binds = alias_text if alias_text not in ("", ".", "_") else ("" if alias_text else value.rsplit("/", 1)[-1])
    return Import(value, (), binds, src.range(spec), src.range(path), True, alias_text == ".")


def collect(src, root, facts: FileFacts) -> None:
    for node in root.named_children:
        kind = node.type
        if kind == "package_clause":
            ident = next((c for c in node.named_children if c.type == "package_identifier"), None)
            facts.package = src.node_text(ident) if ident else ""
        elif kind == "import_declaration":
            for spec in _specs(node, "import_spec"):
                imp = _import(src, spec)
                if imp is not None:
                    facts.imports.append(imp)
        elif kind == "function_declaration":
            name = node.child_by_field_name("name")
            if name is not None:
                facts.definitions.append(src.definition(name, node, "function", ""))
        elif kind == "method_declaration":
            name = node.child_by_field_name("name")
            if name is not None:
                facts.definitions.append(src.definition(name, node, "method", _receiver_type(src, node)))
        elif kind == "type_declaration":
            for spec in node.named_children:
                name = spec.child_by_field_name("name")
                if name is None or spec.type not in ("type_spec", "type_alias"):
                    continue
                type_node = spec.child_by_field_name("type")
                def_kind = _TYPE_KINDS.get(type_node.type if type_node is not None else "", "type")
                facts.definitions.append(src.definition(name, spec, def_kind, ""))
        elif kind in ("const_declaration", "var_declaration"):
            spec_type = "const_spec" if kind == "const_declaration" else "var_spec"
            def_kind = "constant" if kind == "const_declaration" else "variable"
            for spec in _specs(node, spec_type):
                for name in spec.children_by_field_name("name"):
                    facts.definitions.append(src.definition(name, spec, def_kind, ""))
