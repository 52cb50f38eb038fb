"""WorkspaceIndex on the multi-language fixture: import resolution per language, cycles and their
diagnostics, navigation queries, and incremental updates (buffer text wins over disk)."""

import os
import shutil
import threading
from pathlib import Path

import pytest

from lsp.index import IndexOptions, Range, WorkspaceIndex

MULTI = Path(__file__).parent / "fixtures" / "multi"


@pytest.fixture(scope="module")
def index():
    built = WorkspaceIndex()
    built.build(str(MULTI), workers=1)
    return built


@pytest.fixture()
def workspace(tmp_path):
    root = tmp_path / "multi"
    shutil.copytree(MULTI, root)
    built = WorkspaceIndex()
    built.build(str(root), workers=1)
    return built, root


def _p(rel, root=MULTI):
    return str(root / rel)


def _targets(index, rel, spec, root=MULTI):
    for imp, res in index.imports_of(_p(rel, root)):
        if imp.spec == spec:
            return sorted(os.path.relpath(t, root) for t in res.targets)
    raise AssertionError(f"{spec} not imported by {rel}")


def _codes(index, rel, root=MULTI):
    return [d.code for d in index.diagnostics(_p(rel, root))]


def _at(index, rel, needle, line_hint=None, root=MULTI, offset=0):
    """(path, line, col) of the first occurrence of needle (after line_hint) in a file."""
    lines = index.text(_p(rel, root)).split("\n")
    for number, line in enumerate(lines):
        if (line_hint is None or number >= line_hint) and needle in line:
            return _p(rel, root), number, line.index(needle) + offset
    raise AssertionError(needle)


def test_imports_resolve_per_language(index):
    assert _targets(index, "py/app/models.py", ".services") == ["py/app/services.py"]
    assert _targets(index, "py/app/services.py", ".") == ["py/app/repository.py"]  # from . import submodule
    assert _targets(index, "py/app/util.py", "app.models") == ["py/app/models.py"]  # package-root absolute
    assert _targets(index, "py/app/util.py", "os.path") == []  # stdlib: external, not reported
    assert _targets(index, "ts/src/main.ts", "./lib") == ["ts/src/lib/index.ts"]  # index file
    assert _targets(index, "ts/src/main.ts", "@lib/format") == ["ts/src/lib/format.ts"]  # tsconfig paths
    assert _targets(index, "ts/src/legacy.js", "./lib/math") == ["ts/src/lib/math.ts"]
    assert _targets(index, "go/main.go", "example.com/shop/store") == ["go/store/helpers.go", "go/store/store.go"]
    assert _targets(index, "rust/src/lib.rs", "items") == ["rust/src/items.rs"]  # mod items;
    assert _targets(index, "rust/src/util/mod.rs", "deep") == ["rust/src/util/deep.rs"]
    assert _targets(index, "rust/src/items.rs", "super::util") == ["rust/src/util/mod.rs"]
    assert _targets(index, "rust/src/lib.rs", "crate::items") == ["rust/src/items.rs"]


def test_unresolved_workspace_imports_are_reported_third_party_ones_are_not(index):
    unresolved = {
        (os.path.relpath(path, MULTI), d.range.start_line)
        for path, diags in index.all_diagnostics().items() for d in diags if d.code == "unresolved-import"
    }
    assert unresolved == {("py/app/util.py", 4), ("ts/src/main.ts", 4), ("go/main.go", 5),
                          ("rust/src/lib.rs", 2), ("rust/src/lib.rs", 5)}
    [d] = [d for d in index.diagnostics(_p("ts/src/main.ts")) if d.code == "unresolved-import"]
    assert d.severity == "warning" and "./missing" in d.message
    assert index.text(_p("ts/src/main.ts")).split("\n")[4][d.range.start_col : d.range.end_col] == '"./missing"'


def test_every_file_on_the_cycle_gets_one_diagnostic_naming_the_whole_cycle(index):
    cycle = ("py/app/models.py", "py/app/services.py", "py/app/repository.py")
    assert [tuple(os.path.relpath(p, MULTI) for p in c) for c in index.import_cycles()] == [cycle]
    expected = "import cycle: " + " -> ".join(cycle + cycle[:1])
    closing_lines = {"py/app/models.py": "from .services import UserService",
                     "py/app/services.py": "from . import repository",
                     "py/app/repository.py": "from .models import User"}
    for rel in cycle:
        diags = [d for d in index.diagnostics(_p(rel)) if d.code == "import-cycle"]
        assert len(diags) == 1 and diags[0].message == expected
        assert index.line_text(_p(rel), diags[0].range.start_line) == closing_lines[rel]
    assert "import-cycle" not in _codes(index, "py/app/__init__.py")


def test_go_to_definition_across_files_and_languages(index):
    def where(rel, needle, hint=None, offset=1):
        defs = index.definition_at(*_at(index, rel, needle, hint, offset=offset))
        return [(os.path.relpath(d.path, MULTI), d.name, d.kind) for d in defs]

    assert where("py/app/repository.py", "User(name)") == [("py/app/models.py", "User", "class")]
    assert where("py/app/services.py", "load_user") == [("py/app/repository.py", "load_user", "function")]
    assert where("py/app/util.py", "make_service()") == [("py/app/models.py", "make_service", "function")]
    assert where("ts/src/main.ts", "add(1", 5) == [("ts/src/lib/math.ts", "add", "function")]  # via re-export
    assert where("ts/src/main.ts", "formatSum(area") == [("ts/src/lib/format.ts", "formatSum", "function")]
    assert where("ts/src/legacy.js", "add(acc") == [("ts/src/lib/math.ts", "add", "function")]
    assert where("go/main.go", "New()") == [("go/store/store.go", "New", "function")]
    assert where("go/store/helpers.go", "New()") == [("go/store/store.go", "New", "function")]  # same package
    assert where("rust/src/lib.rs", "helper()", 8) == [("rust/src/util/mod.rs", "helper", "function")]
    assert where("py/app/models.py", '".services"'.strip('"'), offset=2) == [("py/app/services.py", ".services", "module")]
    assert where("py/app/models.py", "DEFAULT_ROLE):") == [("py/app/models.py", "DEFAULT_ROLE", "constant")]


def test_references_follow_imports_and_reexports(index):
    [user] = [d for d in index.definitions("User") if d.path.endswith("models.py")]
    refs = {(os.path.relpath(loc.path, MULTI), loc.range.start_line) for loc in index.references_to(user)}
    assert refs >= {("py/app/models.py", 7), ("py/app/repository.py", 2), ("py/app/repository.py", 5),
                    ("py/app/repository.py", 6), ("py/app/util.py", 5), ("py/app/util.py", 8),
                    ("py/app/unicode_names.py", 4), ("py/app/__init__.py", 2)}
    add_refs = index.references(*_at(index, "ts/src/lib/math.ts", "add", offset=1))
    files = {os.path.relpath(loc.path, MULTI) for loc in add_refs}
    assert files == {"ts/src/lib/math.ts", "ts/src/lib/format.ts", "ts/src/lib/index.ts", "ts/src/main.ts",
                     "ts/src/view.tsx", "ts/src/legacy.js"}
    for loc in add_refs:
        line = index.line_text(loc.path, loc.range.start_line)
        assert line[loc.range.start_col : loc.range.end_col] == "add"


def test_references_on_emoji_lines_use_code_point_columns(index):
    [user] = [d for d in index.definitions("User") if d.path.endswith("models.py")]
    [loc] = [loc for loc in index.references_to(user)
             if loc.path.endswith("unicode_names.py") and loc.range.start_line == 4]
    line = index.line_text(loc.path, 4)
    assert line.startswith('banner = "😀') and line[loc.range.start_col : loc.range.end_col] == "User"


def test_document_symbols_search_and_scope(index):
    symbols = index.symbols_in(_p("py/app/models.py"))
    tree = [(s.definition.name, [c.definition.name for c in s.children]) for s in symbols]
    assert tree == [("DEFAULT_ROLE", []), ("User", ["__init__", "display_name"]), ("make_service", [])]
    rust = index.symbols_in(_p("rust/src/util/deep.rs"))
    assert [(s.definition.name, [c.definition.name for c in s.children]) for s in rust] == [
        ("shout", []), ("inner", ["Marker"])]
    assert index.search("dispnm")[0].name == "display_name"
    assert [d.name for d in index.search("User")][:1] == ["User"]
    scope = {(d.name, os.path.relpath(d.path, MULTI)) for d in index.symbols_in_scope(_p("py/app/repository.py"))}
    assert {("User", "py/app/models.py"), ("load_user", "py/app/repository.py")} <= scope
    go_scope = {d.name for d in index.symbols_in_scope(_p("go/store/helpers.go"))}
    assert {"New", "Store", "DefaultSize", "emptyStore"} <= go_scope
    assert ("repository", "module") in {(d.name, d.kind) for d in index.symbols_in_scope(_p("py/app/services.py"))}
    go_members = [d.name for d in index.members_of(_p("go/main.go"), "store")]
    assert go_members == ["Counter", "DefaultSize", "New", "Store"]  # exported names only
    py_members = [(d.name, d.container, os.path.basename(d.path)) for d in index.members_of(_p("py/app/services.py"), "repository")]
    assert py_members == [("load_user", "repository", "repository.py")]
    assert index.members_of(_p("py/app/services.py"), "nothing") == []


def test_update_file_breaks_and_restores_a_cycle(workspace):
    index, root = workspace
    repo = _p("py/app/repository.py", root)
    original = index.text(repo)
    index.update_file(repo, original.replace("from .models import User", "def User(name):\n    return name"))
    assert index.import_cycles() == []
    assert "import-cycle" not in _codes(index, "py/app/models.py", root)
    index.update_file(repo, original)
    assert len(index.import_cycles()) == 1 and "import-cycle" in _codes(index, "py/app/models.py", root)


def test_buffer_text_wins_over_disk_until_reloaded(workspace):
    index, root = workspace
    services = _p("py/app/services.py", root)
    index.update_file(services, "def find(:\n")
    assert _codes(index, "py/app/services.py", root) == ["syntax-error"]
    assert index.import_cycles() == []  # the buffer no longer imports repository
    index.build(str(root), workers=1)  # a rebuild keeps the open buffer
    assert index.text(services) == "def find(:\n"
    assert index.reload_file(services) == ""
    assert "from . import repository" in index.text(services)
    assert _codes(index, "py/app/services.py", root) == ["import-cycle"]


def test_new_and_removed_files_re_resolve_imports(workspace):
    index, root = workspace
    util = _p("py/app/util.py", root)
    assert "unresolved-import" in _codes(index, "py/app/util.py", root)
    missing = root / "py" / "app" / "missing_module.py"
    assert index.update_file(str(missing), "VALUE = 1\n") == ""
    assert "unresolved-import" not in _codes(index, "py/app/util.py", root)
    assert index.importers_of(str(missing)) == [util]
    index.remove_file(str(missing))
    assert "unresolved-import" in _codes(index, "py/app/util.py", root)
    math = _p("ts/src/lib/math.ts", root)
    index.remove_file(math)
    os.remove(math)
    assert math not in index.files and not index.definitions("ZERO")
    assert "unresolved-import" in _codes(index, "ts/src/lib/format.ts", root)


def test_config_changes_re_resolve(workspace):
    index, root = workspace
    go_mod = root / "go" / "go.mod"
    index.update_file(str(go_mod), "module example.com/renamed\n")
    assert _targets(index, "go/main.go", "example.com/shop/store", root) == []
    assert "unresolved-import" not in _codes(index, "go/main.go", root)  # now a third-party path
    index.update_file(str(go_mod), "module example.com/shop\n")
    assert _targets(index, "go/main.go", "example.com/shop/store", root) == ["go/store/helpers.go", "go/store/store.go"]


def test_update_file_refuses_ignored_and_secret_paths(workspace):
    index, root = workspace
    assert index.update_file(str(root / "generated" / "x.py"), "A = 1\n").startswith("ignored")
    assert index.update_file(str(root / ".env"), "K=1\n") == "secret"
    assert index.update_file(str(root / "notes.txt"), "hello\n") == "unsupported language"
    assert not any(p.endswith(("x.py", ".env", "notes.txt")) for p in index.files)


def test_concurrent_updates_and_queries_stay_consistent(workspace):
    index, root = workspace
    models = _p("py/app/models.py", root)
    original = index.text(models)
    errors = []

    def edit(n):
        try:
            for i in range(20):
                index.update_file(models, original + f"\nEXTRA_{n}_{i} = {i}\n")
                index.diagnostics(models)
                index.search("User")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    index.update_file(models, original)
    assert not [d for d in index.definitions("EXTRA_0_0")]
    assert len(index.definitions("User")) == 1


def test_self_member_prefers_the_enclosing_class(workspace):
    index, root = workspace
    path = root / "py" / "app" / "shapes.py"
    text = ("class A:\n    def area(self):\n        return 1\n\n\nclass B:\n    def area(self):\n        return 2\n\n"
            "    def double(self):\n        return self.area() * 2\n")
    assert index.update_file(str(path), text) == ""
    [d] = index.definition_at(str(path), 10, 21)
    assert (d.container, d.name_range.start_line) == ("B", 6)


def test_oversized_buffers_and_unknown_languages_are_refused(tmp_path):
    index = WorkspaceIndex(options=IndexOptions(max_file_size=100))
    index.build(str(tmp_path), workers=1)
    assert index.update_file(str(tmp_path / "big.py"), "x = 1\n" * 50).startswith("too large")
    assert index.update_file(str(tmp_path / "notes.md"), "# hi\n") == "unsupported language"
    assert index.files == []


def test_methods_outside_their_type_nest_under_it(index):
    go = index.symbols_in(_p("go/store/store.go"))
    tree = {s.definition.name: [c.definition.name for c in s.children] for s in go}
    assert tree["Store"] == ["Add", "Total"] and "Add" not in tree
    rust = index.symbols_in(_p("rust/src/items.rs"))
    tree = {s.definition.name: [c.definition.name for c in s.children] for s in rust}
    assert tree == {"Item": ["new", "describe"], "Describe": ["describe"]}


def test_file_removed_while_the_index_builds_stays_removed(tmp_path):
    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_text(f"NAME = {name!r}\n")
    index = WorkspaceIndex(str(tmp_path))

    def remove_b_after_parsing(done, total):
        if done == total and (tmp_path / "b.py").exists():
            (tmp_path / "b.py").unlink()
            index.remove_file(str(tmp_path / "b.py"))  # the watcher's event arrives mid-build

    index.build(progress=remove_b_after_parsing, workers=1)
    assert [os.path.basename(p) for p in index.files] == ["a.py", "c.py"]
    assert not index.definitions("NAME") or all(not d.path.endswith("b.py") for d in index.definitions("NAME"))


@pytest.mark.parametrize("rel, text, cursor_line, needle, bound_at, references", [
    ("py/app/locals_demo.py",
     "name = 'module'\n\n\ndef greet(name, times=1):\n    self_name = name\n    obj.name = name\n    call(name=name)\n"
     "    for i, name in enumerate([]):\n        pass\n    return name * times\n\n\ndef other():\n    return name\n",
     9, "name *", (3, 10), [(3, 10), (4, 16), (5, 15), (6, 14), (7, 11), (9, 11)]),
    ("ts/src/locals_demo.ts",
     "const total = 0;\nexport function sum(values: number[]) {\n  let total = 0;\n  for (const v of values) { total += v; }\n"
     "  return { total };\n}\n",
     3, "total +=", (2, 6), [(2, 6), (3, 28), (4, 11)]),
    ("go/store/locals_demo.go",
     "package store\n\nfunc count(items []int) int {\n\tn := 0\n\tfor _, it := range items {\n\t\tn += it\n\t}\n\treturn n\n}\n",
     5, "n +=", (3, 1), [(3, 1), (5, 2), (7, 8)]),
])
def test_locals_stay_inside_their_function(workspace, rel, text, cursor_line, needle, bound_at, references):
    index, root = workspace
    path = str(root / rel)
    assert index.update_file(path, text) == ""
    col = text.split("\n")[cursor_line].index(needle)
    [definition] = index.definition_at(path, cursor_line, col)
    assert (definition.kind, definition.name_range[:2]) == ("variable", bound_at)
    found = [loc.range[:2] for loc in index.references(path, cursor_line, col)]
    assert found == references
    assert all(loc.path == path for loc in index.references_to(definition))


def test_references_to_a_module_name_skip_functions_where_it_is_a_local(workspace):
    index, root = workspace
    lib, user = root / "py" / "app" / "shadow_lib.py", root / "py" / "app" / "shadow_use.py"
    index.update_file(str(lib), "def total(xs):\n    return sum(xs)\n\n\ndef report(rows):\n    total = 0\n"
                                "    for r in rows:\n        total += r\n    return total\n")
    index.update_file(str(user), "from .shadow_lib import total\n\n\ndef run(total_rows):\n    return total([1])\n")
    [definition] = [d for d in index.definitions("total")]
    found = sorted((os.path.basename(loc.path), loc.range.start_line) for loc in index.references_to(definition))
    assert found == [("shadow_lib.py", 0), ("shadow_use.py", 0), ("shadow_use.py", 4)]


def test_buffer_with_a_lone_surrogate_is_indexed_with_code_point_columns(tmp_path):
    index = WorkspaceIndex(str(tmp_path))
    index.build(workers=1)
    path = str(tmp_path / "odd.py")
    text = 's = "\ud83d"; value = 1\ndef f(:\n'
    assert index.update_file(path, text) == ""
    [value] = index.definitions("value")
    assert value.name_range == Range(0, 9, 0, 14)
    assert [d.code for d in index.diagnostics(path)] == ["syntax-error"]


def test_renaming_an_imported_name_updates_the_importers_diagnostics(workspace):
    index, root = workspace
    models = _p("py/app/models.py", root)
    original = index.text(models)
    index.update_file(models, original.replace("def make_service", "def build_service"))
    [d] = [d for d in index.diagnostics(_p("py/app/util.py", root)) if "make_service" in d.message]
    assert d.code == "unresolved-import" and "make_service is neither defined in py/app/models.py" in d.message
    index.update_file(models, original)
    assert not [d for d in index.diagnostics(_p("py/app/util.py", root)) if "make_service" in d.message]
