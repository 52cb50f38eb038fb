"""Finds where a name is bound inside one function (parameters, assignments, loop and `with`/
`except` targets, `let`/`const`/`:=`), by parsing the file on demand. Used to keep go-to-definition,
references and rename of local variables inside their function. Knows nothing of other files."""

from __future__ import annotations

from .extract import Source, _identifier_query
from .languages import parser
from .model import Range

# nodes that only wrap a bound name (destructuring, typed parameters, `as` targets, Go's lists)
_WRAPPERS = {"pattern_list", "tuple_pattern", "list_pattern", "array_pattern", "object_pattern",
             "list_splat_pattern", "dictionary_splat_pattern", "as_pattern_target", "expression_list",
             "tuple_struct_pattern", "typed_parameter", "rest_pattern", "assignment_pattern",
             "object_assignment_pattern", "pair_pattern", "reference_pattern", "mut_pattern", "parenthesized_expression"}
# (parent type, field of the child or None for any position) that bind a name
_BINDERS = {
    ("assignment", "left"), ("for_statement", "left"), ("for_in_clause", "left"), ("named_expression", "name"),
    ("typed_default_parameter", "name"), ("default_parameter", "name"), ("parameters", None),
    ("lambda_parameters", None), ("as_pattern", "alias"),
    ("required_parameter", "pattern"), ("optional_parameter", "pattern"), ("formal_parameters", None),
    ("variable_declarator", "name"), ("for_in_statement", "left"), ("catch_clause", "parameter"),
    ("arrow_function", "parameter"),
    ("parameter_declaration", "name"), ("short_var_declaration", "left"), ("var_spec", "name"),
    ("const_spec", "name"), ("range_clause", "left"),
    ("parameter", "pattern"), ("let_declaration", "pattern"), ("for_expression", "pattern"),
    ("closure_parameters", None), ("let_condition", "pattern"), ("match_pattern", None),
}


def _field_of(parent, child) -> str | None:
    for i, candidate in enumerate(parent.children):
        if candidate.id == child.id:
            return parent.field_name_for_child(i)
    return None


def _is_binding(node) -> bool:
    parent = node.parent
    while parent is not None and parent.type in _WRAPPERS:
        if parent.type == "tuple_struct_pattern" and _field_of(parent, node) == "type":
            return False
        if parent.type == "pair_pattern" and _field_of(parent, node) == "key":
            return False
        node, parent = parent, parent.parent
    if parent is None:
        return False
    field = _field_of(parent, node)
    return (parent.type, field) in _BINDERS or (parent.type, None) in _BINDERS


# (parent type, field) where an identifier names a member or a keyword, not a variable
_NOT_VARIABLES = {("attribute", "attribute"), ("member_expression", "property"), ("field_expression", "field"),
                  ("selector_expression", "field"), ("keyword_argument", "name"), ("scoped_identifier", "name")}


def _names_in_scope(path: str, text: str, language: str, scope: Range, name: str):
    src = Source(path, text)
    wanted = name.encode("utf-8", "surrogatepass")
    if wanted not in src.data:
        return src, []
    tree = parser(language).parse(src.data)
    query, cursor_class = _identifier_query(language)
    nodes = []
    for node in cursor_class(query).captures(tree.root_node).get("id", []):
        row = node.start_point[0]
        if scope.start_line <= row <= scope.end_line and src.data[node.start_byte : node.end_byte] == wanted:
            rng = src.range(node)
            if scope.contains(rng.start_line, rng.start_col):
                nodes.append((rng, node))
    nodes.sort(key=lambda item: item[0])
    return src, nodes


def local_bindings(path: str, text: str, language: str, scope: Range, name: str) -> list[Range]:
    """Ranges inside `scope` where `name` is bound (first one first); empty if none."""
    _, nodes = _names_in_scope(path, text, language, scope, name)
    return [rng for rng, node in nodes if node.type == "shorthand_property_identifier_pattern" or _is_binding(node)]


def binding_ranges(path: str, text: str, language: str, name: str) -> list[Range]:
    """Every place in the file where `name` is bound as a variable or parameter."""
    everywhere = Range(0, 0, text.count("\n") + 1, 0)
    return local_bindings(path, text, language, everywhere, name)


def local_references(path: str, text: str, language: str, scope: Range, name: str) -> list[Range]:
    """Ranges inside `scope` where `name` is used as a variable (not `obj.name`, not `f(name=...)`)."""
    _, nodes = _names_in_scope(path, text, language, scope, name)
    out = []
    for rng, node in nodes:
        parent = node.parent
        if parent is not None and (parent.type, _field_of(parent, node)) in _NOT_VARIABLES:
            continue
        out.append(rng)
    return out
