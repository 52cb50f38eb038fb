"""Cycle fixes on real tree-sitter parses: offered only when the edited file no longer imports the
cycle's next file at load time, and the result re-indexes without that cycle."""

import pathlib

from lsp import refactor
from lsp.index.workspace import WorkspaceIndex


def _index(root: pathlib.Path, files: dict[str, str]) -> WorkspaceIndex:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    index = WorkspaceIndex(str(root))
    index.build()
    return index


def _fixes(index, root, relative):
    path = str(root / relative)
    return refactor.cycle_fixes(index, path, index.text(path), (0, 0), (0, 0), True)


def _apply(root, relative, fix):
    path = root / relative
    path.write_text(refactor.apply_edits(path.read_text(), fix.edits[str(path)]))


def test_type_checking_import_adds_future_annotations(tmp_path):
    index = _index(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": '"""Module a."""\nfrom pkg.b import Thing\n\n\ndef use(x: Thing) -> Thing:\n    return x\n',
        "pkg/b.py": "from pkg.a import use\n\n\nclass Thing:\n    pass\n\n\nuse(Thing())\n"})
    [fix] = _fixes(index, tmp_path, "pkg/a.py")
    assert "type checking" in fix.title
    _apply(tmp_path, "pkg/a.py", fix)
    assert (tmp_path / "pkg/a.py").read_text() == (
        '"""Module a."""\nfrom __future__ import annotations\nfrom typing import TYPE_CHECKING\n\n'
        'if TYPE_CHECKING:\n    from pkg.b import Thing\n\n\ndef use(x: Thing) -> Thing:\n    return x\n')
    after = WorkspaceIndex(str(tmp_path))
    after.build()
    assert after.import_cycles() == [] and after.diagnostics(str(tmp_path / "pkg/a.py")) == []


def test_a_second_import_of_the_same_module_means_no_fix(tmp_path):
    index = _index(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\nfrom . import b\n\n\ndef g():\n    return f()\n\n\nX = b\n",
        "pkg/b.py": "from pkg.a import g\n\n\ndef f():\n    return 1\n"})
    assert index.cycle_of(str(tmp_path / "pkg/a.py")) is not None
    assert _fixes(index, tmp_path, "pkg/a.py") == []


def test_module_level_use_means_no_fix(tmp_path):
    index = _index(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n\nVALUE = f()\n",
        "pkg/b.py": "from pkg.a import VALUE\n\n\ndef f():\n    return VALUE\n"})
    assert _fixes(index, tmp_path, "pkg/a.py") == []


def test_typescript_default_plus_named_import_is_not_made_type_only(tmp_path):
    index = _index(tmp_path, {
        "a.ts": 'import B, { T } from "./b";\nexport function f(x: T): B { return x as B; }\n',
        "b.ts": 'import { f } from "./a";\nexport interface T {}\nexport default interface B {}\nf({});\n'})
    assert index.cycle_of(str(tmp_path / "a.ts")) is not None
    assert _fixes(index, tmp_path, "a.ts") == []


def test_rename_checks():
    for name, language in (("1x", "python"), ("class", "python"), ("a-b", "typescript"), ("fn", "rust")):
        try:
            refactor.check_new_name(name, language)
        except refactor.RefactorError:
            continue
        raise AssertionError(f"{name!r} accepted for {language}")
    refactor.check_new_name("名前", "python")
    refactor.check_new_name("$el", "typescript")


def test_soft_keywords_are_valid_names():
    refactor.check_new_name("match", "python")
    refactor.check_new_name("type", "typescript")
    refactor.check_new_name("from", "typescript")
