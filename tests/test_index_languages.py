"""Per-language extraction through the real tree-sitter grammars: definitions with containers and
ranges, imports, identifier occurrences, code-point columns and tight syntax-error ranges."""

from pathlib import Path

import pytest

from lsp.index.extract import extract, identifiers
from lsp.index.model import Range

MULTI = Path(__file__).parent / "fixtures" / "multi"


def _facts(rel: str, language: str):
    path = MULTI / rel
    return extract(str(path), path.read_text(encoding="utf-8"), language)


def _kinds(facts):
    return {(d.name, d.kind, d.container) for d in facts.definitions}


def test_python_definitions_and_imports():
    facts = _facts("py/app/models.py", "python")
    assert _kinds(facts) >= {("DEFAULT_ROLE", "constant", ""), ("User", "class", ""),
                             ("__init__", "method", "User"), ("display_name", "method", "User"),
                             ("make_service", "function", "")}
    user = next(d for d in facts.definitions if d.name == "User")
    assert user.name_range == Range(7, 6, 7, 10)
    assert user.full_range.start_line == 7 and user.full_range.end_line == 13
    [imp] = facts.imports
    assert (imp.spec, [n.name for n in imp.names], imp.runtime) == (".services", ["UserService"], True)
    assert imp.spec_range == Range(2, 5, 2, 14)


def test_python_function_local_and_type_checking_imports_are_not_runtime():
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\nelse:\n    import b\n"
           "def f():\n    import c\n    return c\n")
    facts = extract("t.py", src, "python")
    assert [(i.spec, i.runtime) for i in facts.imports] == [("typing", True), (".a", False), ("b", True), ("c", False)]


def test_typescript_definitions_imports_and_type_only():
    facts = _facts("ts/src/types.ts", "typescript")
    assert _kinds(facts) >= {("Shape", "interface", ""), ("Size", "type", ""), ("Color", "enum", ""),
                             ("Rect", "class", ""), ("scale", "method", "Rect"), ("width", "variable", "Rect"),
                             ("area", "function", "")}
    main = _facts("ts/src/main.ts", "typescript")
    specs = [(i.spec, i.runtime, tuple(n.name for n in i.names)) for i in main.imports]
    assert specs[:3] == [("./lib", True, ("add", "fmt")), ("@lib/format", True, ("formatSum",)),
                         ("./types", False, ("Shape",))]
    index = _facts("ts/src/lib/index.ts", "typescript")
    assert [(i.spec, i.kind, i.wildcard) for i in index.imports] == [("./math", "reexport", False),
                                                                    ("./format", "reexport", True)]


def test_tsx_and_commonjs():
    view = _facts("ts/src/view.tsx", "tsx")
    assert ("View", "function", "") in _kinds(view)
    assert not view.syntax_errors  # JSX parses with the tsx grammar
    legacy = _facts("ts/src/legacy.js", "javascript")
    assert [(i.spec, i.kind, [n.name for n in i.names], i.binds) for i in legacy.imports] == [
        ("./lib/math", "require", ["add"], ""), ("path", "require", [], "path")]
    assert ("legacyTotal", "function", "") in _kinds(legacy)
    exports = extract("e.js", "exports.parse = function (s) { return s };\nmodule.exports.VERSION = 1;\n", "javascript")
    assert _kinds(exports) == {("parse", "function", ""), ("VERSION", "variable", "")}


def test_declaration_files():
    facts = extract("lib.d.ts", "declare function x(a: number): void;\ndeclare const y: number;\n", "typescript")
    assert _kinds(facts) == {("x", "function", ""), ("y", "constant", "")}


def test_go_definitions_and_imports():
    facts = _facts("go/store/store.go", "go")
    assert facts.package == "store"
    assert _kinds(facts) >= {("Store", "struct", ""), ("Counter", "interface", ""), ("DefaultSize", "constant", ""),
                             ("New", "function", ""), ("Add", "method", "Store"), ("Total", "method", "Store")}
    main = _facts("go/main.go", "go")
    assert [(i.spec, i.binds) for i in main.imports] == [
        ("fmt", "fmt"), ("example.com/shop/missing", "missing"), ("example.com/shop/store", "store")]


def test_rust_definitions_mods_and_use_trees():
    items = _facts("rust/src/items.rs", "rust")
    assert _kinds(items) >= {("Item", "struct", ""), ("Describe", "trait", ""), ("describe", "method", "Describe"),
                             ("new", "method", "Item"), ("describe", "method", "Item")}
    lib = _facts("rust/src/lib.rs", "rust")
    mods = [(i.spec, i.kind) for i in lib.imports if i.kind == "mod"]
    assert mods == [("items", "mod"), ("util", "mod"), ("absent", "mod")]
    uses = {(i.spec, tuple(n.name for n in i.names)) for i in lib.imports if i.kind == "import"}
    assert uses == {("crate::items", ("Item",)), ("crate::util", ("helper", "nowhere")),
                    ("std::collections", ("HashMap",))}
    deep = _facts("rust/src/util/deep.rs", "rust")
    assert ("inner", "module", "") in _kinds(deep) and ("Marker", "struct", "inner") in _kinds(deep)


def test_columns_are_code_points_on_lines_with_emoji_and_cjk():
    path = MULTI / "py/app/unicode_names.py"
    text = path.read_text(encoding="utf-8")
    facts = extract(str(path), text, "python")
    for d in facts.definitions:
        line = text.split("\n")[d.name_range.start_line]
        assert line[d.name_range.start_col : d.name_range.end_col] == d.name
    assert {"banner", "owner", "label", "count_users", "挨拶"} <= {d.name for d in facts.definitions}
    occurrences = identifiers(str(path), text, "python", "User")
    line = text.split("\n")[4]
    assert [r for _, r in occurrences][-1] == Range(4, line.index("User"), 4, line.index("User") + 4)


@pytest.mark.parametrize("language, source, where, message", [
    ("python", "def broken(a, b:\n    return a + b\n\n\ndef fine():\n    return 1\n", Range(0, 10, 0, 11),
     "'(' was never closed"),
    ("python", "x = 1\ny = )\n", Range(1, 4, 1, 5), "unmatched ')'"),
    ("python", "def f(:\n    pass\n", Range(0, 6, 0, 6), "missing ')'"),
    ("python", "class A:\n    def m(self)\n        return 1\n", Range(1, 4, 1, 7), "syntax error: unexpected 'def'"),
    ("typescript", "const a = 1;\nfunction f( { return 1 }\n", Range(1, 10, 1, 11), "'(' was never closed"),
    ("go", "package main\nfunc main() {\n  x := \n}\n", Range(2, 6, 2, 6), "missing 'identifier'"),
    ("rust", "fn main() { let x = ; }\n", Range(0, 18, 0, 19), "syntax error: unexpected '='"),
])
def test_syntax_errors_have_tight_ranges(language, source, where, message):
    facts = extract("t", source, language)
    assert facts.syntax_errors == [(where, message)]


def test_syntax_error_range_counts_code_points():
    facts = extract("t.py", "s = '😀中文'; f(\n", "python")
    [(rng, _)] = facts.syntax_errors
    assert rng == Range(0, 12, 0, 13)


def test_identifiers_skip_strings_and_comments():
    src = "name = 1  # name\nprint('name', name)\n"
    assert [r for _, r in identifiers("t.py", src, "python", "name")] == [Range(0, 0, 0, 4), Range(1, 14, 1, 18)]
