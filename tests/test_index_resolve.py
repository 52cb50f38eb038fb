"""Import resolution corner cases per language, on small workspaces written to temporary
directories: src/ layouts, tsconfig baseUrl, `.js` specifiers naming `.ts` files, nested Go
modules, Rust crate names and `mod` files below non-mod files, and which imports form cycles."""

import os

from lsp.index import WorkspaceIndex


def _workspace(tmp_path, files: dict[str, str]) -> WorkspaceIndex:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    index = WorkspaceIndex()
    index.build(str(tmp_path), workers=1)
    return index


def _resolved(index, tmp_path, rel):
    return {imp.spec: sorted(os.path.relpath(t, tmp_path) for t in res.targets)
            for imp, res in index.imports_of(str(tmp_path / rel))}


def _unresolved(index, tmp_path):
    return sorted((os.path.relpath(p, tmp_path), d.range.start_line)
                  for p, ds in index.all_diagnostics().items() for d in ds if d.code == "unresolved-import")


def test_python_src_layout_packages_and_names(tmp_path):
    index = _workspace(tmp_path, {
        "src/shop/__init__.py": "",
        "src/shop/cart.py": "from shop.prices import price, missing_name\nfrom shop import prices\nimport shop.nothing\n",
        "src/shop/prices.py": "def price():\n    return 1\n",
        "tests/test_cart.py": "from shop.cart import price\nimport requests\n",
    })
    assert _resolved(index, tmp_path, "src/shop/cart.py") == {
        "shop.prices": ["src/shop/prices.py"], "shop": ["src/shop/prices.py"], "shop.nothing": []}
    assert _resolved(index, tmp_path, "tests/test_cart.py") == {"shop.cart": ["src/shop/cart.py"], "requests": []}
    messages = [d.message for d in index.diagnostics(str(tmp_path / "src/shop/cart.py"))]
    assert any("missing_name is neither defined in src/shop/prices.py" in m for m in messages)
    assert _unresolved(index, tmp_path) == [("src/shop/cart.py", 0), ("src/shop/cart.py", 2)]


def test_typescript_base_url_js_specifiers_and_index_files(tmp_path):
    index = _workspace(tmp_path, {
        "web/tsconfig.json": '{"compilerOptions": {"baseUrl": "src"}}',
        "web/src/app.ts": 'import { a } from "./util.js";\nimport { b } from "components";\nimport x from "lodash";\n'
                          'import pkg from "../package.json";\nimport "./app.css";\n',
        "web/package.json": "{}\n",
        "web/src/app.css": "body {}\n",
        "web/src/util.ts": "export const a = 1;\n",
        "web/src/components/index.tsx": "export const b = 2;\n",
    })
    assert _resolved(index, tmp_path, "web/src/app.ts") == {
        "./util.js": ["web/src/util.ts"], "components": ["web/src/components/index.tsx"], "lodash": [],
        "../package.json": [], "./app.css": []}
    assert _unresolved(index, tmp_path) == []


def test_typescript_cycle_ignores_type_only_imports(tmp_path):
    index = _workspace(tmp_path, {
        "a.ts": 'import { b } from "./b";\nexport const a = () => b;\n',
        "b.ts": 'import { c } from "./c";\nexport const b = c;\n',
        "c.ts": 'import type { A } from "./a";\nexport const c = 1;\n',
    })
    assert index.import_cycles() == []
    index.update_file(str(tmp_path / "c.ts"), 'import { a } from "./a";\nexport const c = 1;\n')
    assert [tuple(os.path.basename(p) for p in c) for c in index.import_cycles()] == [("a.ts", "b.ts", "c.ts")]
    for name in ("a.ts", "b.ts", "c.ts"):
        assert [d.code for d in index.diagnostics(str(tmp_path / name))] == ["import-cycle"]


def test_go_nested_module_and_package_cycle(tmp_path):
    index = _workspace(tmp_path, {
        "go.mod": "module example.com/top\n",
        "a/a.go": 'package a\nimport "example.com/top/b"\nfunc A() { b.B() }\n',
        "b/b.go": 'package b\nimport "example.com/top/a"\nfunc B() { a.A() }\n',
        "tools/go.mod": "module example.com/top/tools\n",
        "tools/gen/gen.go": 'package gen\nimport "example.com/top/tools/missing"\n',
    })
    assert _resolved(index, tmp_path, "a/a.go") == {"example.com/top/b": ["b/b.go"]}
    assert _unresolved(index, tmp_path) == [("tools/gen/gen.go", 1)]
    [cycle] = index.import_cycles()
    assert sorted(os.path.relpath(p, tmp_path) for p in cycle) == ["a/a.go", "b/b.go"]


def test_rust_crate_name_and_mod_below_a_non_mod_file(tmp_path):
    index = _workspace(tmp_path, {
        "Cargo.toml": '[package]\nname = "my-crate"\nversion = "0.1.0"\n',
        "src/main.rs": "mod net;\nuse my_crate::net::client::Client;\nuse net::client;\nfn main() {}\n",
        "src/net.rs": "pub mod client;\nuse super::net::client::Nope;\n",
        "src/net/client.rs": "pub struct Client;\n",
    })
    assert _resolved(index, tmp_path, "src/net.rs")["client"] == ["src/net/client.rs"]
    resolved = _resolved(index, tmp_path, "src/main.rs")
    assert resolved["my_crate::net::client"] == ["src/net/client.rs"]
    assert resolved["net"] == ["src/net.rs", "src/net/client.rs"]
    assert _unresolved(index, tmp_path) == [("src/net.rs", 1)]
    assert index.import_cycles() == []  # Rust module references never form cycle diagnostics


def test_stub_and_declaration_files_never_close_a_cycle(tmp_path):
    index = _workspace(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.pyi": "from pkg import a\n",
        "web/x.ts": 'import { y } from "./y";\nexport const x = 1;\n',
        "web/y.d.ts": 'import { x } from "./x";\nexport declare const y: number;\n',
    })
    assert _resolved(index, tmp_path, "pkg/a.py") == {"pkg": ["pkg/b.pyi"]}
    assert _resolved(index, tmp_path, "web/x.ts") == {"./y": ["web/y.d.ts"]}
    assert index.import_cycles() == []


def test_tsconfig_extends_keeps_paths_relative_to_the_base_config(tmp_path):
    index = _workspace(tmp_path, {
        "tsconfig.base.json": '{"compilerOptions": {"paths": {"@shared/*": ["libs/shared/*"]}}}',
        "apps/web/tsconfig.json": '{"extends": "../../tsconfig.base.json", "compilerOptions": {"strict": true}}',
        "apps/web/main.ts": 'import { s } from "@shared/strings";\nimport { t } from "@shared/nope";\n',
        "libs/shared/strings.ts": "export const s = 1;\n",
    })
    assert _resolved(index, tmp_path, "apps/web/main.ts") == {"@shared/strings": ["libs/shared/strings.ts"],
                                                              "@shared/nope": []}
    assert _unresolved(index, tmp_path) == [("apps/web/main.ts", 1)]


def test_checking_one_package_folder(tmp_path):
    """The workspace is a package itself: its modules are not top-level modules, imports that
    climb out of it are unknown, and compiled extension modules count as present."""
    index = _workspace(tmp_path, {
        "__init__.py": "from ._speedups import fast\nfrom .core import run\n",
        "core.py": "from ...outside import thing\nimport core_helpers\n\n\ndef run():\n    return 1\n",
        "_speedups.cpython-311-x86_64-linux-gnu.so": "\0ELF",
        "core_helpers.py": "X = 1\n",
    })
    assert _resolved(index, tmp_path, "__init__.py") == {"._speedups": [], ".core": ["core.py"]}
    assert _resolved(index, tmp_path, "core.py") == {"...outside": [], "core_helpers": []}
    assert _unresolved(index, tmp_path) == []
