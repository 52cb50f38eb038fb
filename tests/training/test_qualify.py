"""Module-qualified call sites in training rows: imports rewritten to `module.name` uses (Python, JS/TS), uses
already written so in any language, call-site middles right after the qualifier, and context files chosen by the
qualifier a target writes (real bundled tokenizer)."""

import random
import re

import numpy as np

from inference.file_summary import top_level_names
from inference.training import middles, qualify
from inference.training.batches import Encoder, RowBuilder, file_segment_text
from tests.training.test_middles import groups_of


def test_imports_of_included_files_become_module_qualified_uses():
    text = ("from .helpers import parse_header, MAX_RETRIES\n"
            "from pkg.store import (\n    RecordStore,\n    open_store,\n)\n"
            "from .other import aliased as alias\n"
            "from toplevel import compute_total\n\n\n"
            "def run(raw, parse_header_only=False):\n"
            "    n = MAX_RETRIES\n"
            "    db = open_store(RecordStore(), retries=n)\n"
            "    obj.parse_header(raw)\n"
            "    call(compute_total=1)\n"
            "    return parse_header(raw) + compute_total(n)\n")
    modules = {"helpers": {"parse_header", "MAX_RETRIES", "other_def"}, "store": {"RecordStore", "open_store"},
               "other": {"aliased"}, "toplevel": {"compute_total"}}
    out, names = qualify.qualify_imports(text, modules)
    assert names == {"parse_header", "MAX_RETRIES", "RecordStore", "open_store", "compute_total"}
    assert out.splitlines()[:4] == ["from . import helpers", "from pkg import store",
                                    "from .other import aliased as alias", "import toplevel"]
    assert "    n = helpers.MAX_RETRIES\n" in out
    assert "store.open_store(store.RecordStore(), retries=n)" in out
    assert "obj.parse_header(raw)" in out and "call(compute_total=1)" in out  # attributes, keywords: untouched
    assert "return helpers.parse_header(raw) + toplevel.compute_total(n)" in out
    assert "parse_header_only" in out
    # a name the module does not define, or a stem the file already uses, leaves the import as it is
    assert qualify.qualify_imports("from .helpers import missing\nmissing()\n", modules) == \
        ("from .helpers import missing\nmissing()\n", set())
    clash = "from .helpers import parse_header\nhelpers = []\nparse_header(helpers)\n"
    assert qualify.qualify_imports(clash, modules) == (clash, set())


def test_qualified_rows_put_call_sites_after_the_module_name(tokenizer):
    enc = Encoder(tokenizer)
    projects = {}
    for p in range(2):
        files = []
        for f in range(4):
            other = (f + 1) % 4
            body = (f"from pkg{p}.mod{other} import compute_total_{p}_{other}, RecordStore{p}{other}\n\n\n"
                    + "".join(f"def compute_total_{p}_{f}{'_' + str(k) if k else ''}(value, scale=2):\n"
                              f"    return value * scale + {k}\n\n" for k in range(3))
                    + f"class RecordStore{p}{f}:\n    pass\n\n\n"
                    + f"def run_{f}(items):\n    store = RecordStore{p}{other}()\n"
                      f"    return compute_total_{p}_{other}(items, scale=3)\n")
            files.append((f"pkg{p}/mod{f}.py", body))
        projects[f"python:proj{p}"] = files
    file_ids = {k: enc.many([f"<|file_sep|>{p}\n{t}" for p, t in v]) for k, v in projects.items()}
    rows = RowBuilder(enc, projects, file_ids, T=2048, seed=3, fim_rate=1.0, causal_rate=0.0, callsite_rate=1.0,
                      rename_rate=0.0, qualify_rate=1.0)
    qualified = 0
    for _ in range(10):
        row = rows.row()
        for g in groups_of(enc, row):
            module = re.search(r"^from pkg\d import (mod\d)$", g["prefix"], re.M)
            if not module:
                continue
            qualified += 1
            assert g["prefix"].endswith(module.group(1) + "."), g["prefix"][-60:]
            assert not re.search(r"(?<![.\w])(?<!def )(?<!class )(compute_total_\d_\d|RecordStore\d\d)\(", g["prefix"] + g["suffix"])
        assert row.copy.any()
    assert qualified >= 10


def test_qualified_uses_are_names_written_after_an_included_module_qualifier():
    helpers = {"helpers.": {"trim", "RATE", "Invoice"}}
    python = ("import helpers.trim\nimport other\n\n\n"
              "def total(x):\n"
              "    # helpers.RATE is per cent\n"
              "    y = other.trim(x) + myhelpers.Invoice(x)\n"
              "    return helpers.trim(x) * pkg.helpers.RATE\n")
    # an import line names a path, not a call site: `import helpers.trim` does not count (nor do comments,
    # another module's `other.trim` or a longer word `myhelpers.`); `pkg.helpers.RATE` does
    assert qualify.qualified_uses(python, helpers) == {"trim", "RATE"}
    assert qualify.qualified_uses("import helpers.trim\nhelpers_trim = 1\n", helpers) == set()
    go = 'package main\n\nimport "example.com/app/srv"\n\nfunc main() {\n\th := srv.ParseHeader(raw)\n\tsrv.Mode = 2\n}\n'
    assert qualify.qualified_uses(go, {"srv.": {"ParseHeader", "Server"}}) == {"ParseHeader"}
    rust = "use crate::table::parse;\nuse crate::table::Row;\n\nfn main() {\n    let row = crate::table::parse(s);\n}\n"
    assert qualify.qualified_uses(rust, {"table::": {"parse", "Row"}}) == {"parse"}
    # Go files of one folder are one package; a qualifier two modules share is left out
    modules = qualify.qualified_modules([
        ("srv/a.go", "package srv\n\nfunc ParseHeader() {}\n"), ("srv/b.go", "package srv\n\ntype Server struct{}\n"),
        ("x/util.py", "def trim(): pass\n"), ("y/util.py", "def strip(): pass\n"), ("src/table.rs", "pub fn parse() {}\n")])
    assert modules == {"srv.": {"ParseHeader", "Server"}, "table::": {"parse"}}
    # the call-site middle of such a name starts right after the qualifier, not at `x.trim` or a bare `trim`
    text = "a = x.trim(v)\nb = trim\nc = helpers.trim(v, 2)\n"
    for seed in range(20):
        start, end, name = middles.call_site_split(text, {"trim"}, random.Random(seed), prefer={"trim"},
                                                   after={"helpers."})
        assert text[:start].endswith("c = helpers.") and text[start:end] == "trim(v, 2)"


def go_projects() -> dict:
    """Go projects whose packages (one folder each) call each other as `pkg.Name(` and their own package bare."""
    projects = {}
    for p in range(2):
        store = (f"package store\n\nconst MaxRows{p} = 64\n\ntype Record{p} struct {{\n\tKey string\n}}\n\n"
                 f"func Open{p}(path string) *Record{p} {{\n\treturn &Record{p}{{Key: path}}\n}}\n\n"
                 f"func helperCount{p}(n int) int {{\n\treturn n + MaxRows{p}\n}}\n")
        table = (f"package table\n\nimport \"example.com/p{p}/store\"\n\nfunc Lookup{p}(key string) int {{\n"
                 f"\tr := store.Open{p}(key)\n\treturn len(r.Key) + store.MaxRows{p}\n}}\n\n"
                 f"func Insert{p}(key string, n int) int {{\n\treturn Lookup{p}(key) + countCells{p}(n)\n}}\n\n"
                 f"func countCells{p}(n int) int {{\n\treturn n * 2\n}}\n")
        header = (f"package srv\n\nimport \"example.com/p{p}/table\"\n\nfunc ParseHeader{p}(raw string) string {{\n"
                  f"\treturn raw[:table.Lookup{p}(raw)]\n}}\n\nfunc New() *Server{p} {{\n\treturn &Server{p}{{}}\n}}\n")
        server = (f"package srv\n\nimport \"example.com/p{p}/table\"\n\ntype Server{p} struct {{\n\tname string\n}}\n\n"
                  f"func (s *Server{p}) Handle{p}(raw string) int {{\n\th := ParseHeader{p}(raw)\n"
                  f"\treturn table.Insert{p}(h, len(s.name))\n}}\n")
        main = (f"package main\n\nimport (\n\t\"example.com/p{p}/srv\"\n\t\"example.com/p{p}/table\"\n)\n\n"
                f"func main() {{\n\ts := srv.New()\n\th := srv.ParseHeader{p}(\"x\")\n"
                f"\tprintln(s.Handle{p}(h), table.Lookup{p}(h))\n}}\n")
        projects[f"go:p{p}"] = [("store/store.go", store), ("table/table.go", table), ("srv/header.go", header),
                                ("srv/server.go", server), ("cmd/app/main.go", main)]
    return projects


def qualifying_rows(tokenizer, projects: dict, seed: int) -> tuple[Encoder, RowBuilder, set[str]]:
    """Rows of FIM call sites with qualifying on and names lines, and the names any header lists."""
    enc = Encoder(tokenizer)
    file_ids = {k: enc.many([file_segment_text(p, t, True) for p, t in v]) for k, v in projects.items()}
    rows = RowBuilder(enc, projects, file_ids, T=2048, seed=seed, fim_rate=1.0, causal_rate=0.0, callsite_rate=1.0,
                      rename_rate=0.0, qualify_rate=1.0, segment_names=True)
    return enc, rows, {n for files in projects.values() for p, t in files for n in top_level_names(p, t)}


def copy_marks_spelling(enc: Encoder, row, names: set[str]) -> int:
    """How many tokens the row marks for the copy weight; each run of them spells one of `names`."""
    at = np.flatnonzero(row.copy)
    for run in np.split(at, np.flatnonzero(np.diff(at) > 1) + 1) if len(at) else []:
        assert enc.tok.decode(row.labels[run].tolist()).strip() in names
    return len(at)


def test_go_rows_put_call_sites_right_after_the_package_name_and_mark_them_for_copying(tokenizer):
    enc, rows, exported = qualifying_rows(tokenizer, go_projects(), seed=1)
    groups = after_package = marked = 0
    for _ in range(12):
        row = rows.row()
        for g in groups_of(enc, row):
            if g["header"].endswith("store/store.go\n"):
                continue  # the leaf package calls no other package
            groups += 1
            lead = re.search(r"(?<![\w.])(\w+)\.$", g["prefix"])
            name = re.match(r"[A-Za-z_]\w*", g["middle"])
            if not (lead and name):
                continue
            # the header of an included file of that package lists the name, one copy away
            headers = [c.split("\n", 2)[1] for c in g["context"]]
            if f"{lead.group(1)}.{name.group(0)}" in " ".join(h for h in headers if h.startswith(f"# {lead.group(1)}:")):
                after_package += 1
        marked += copy_marks_spelling(enc, row, exported)  # names some header lists
        assert not (row.copy & ~row.tail).any()
    assert groups >= 15 and after_package >= 0.9 * groups, (after_package, groups)
    assert marked >= 10


def test_context_order_puts_first_the_package_a_go_target_calls_by_name(tokenizer):
    """A Go file names another package by its package clause (`util.Min`), not by the file's stem, and the name
    is too short to count as a definition it shares: that package's file still comes before unrelated files."""
    enc = Encoder(tokenizer)
    others = [(f"internal/part{k}/part{k}.go", f"package part{k}\n\nfunc Unused{k}() int {{\n\treturn {k}\n}}\n")
              for k in range(12)]
    util = ("internal/util/numbers.go", "package util\n\nfunc Min(a, b int) int {\n\treturn a\n}\n")
    main = ("cmd/app/main.go", "package main\n\nimport \"example.com/internal/util\"\n\nfunc main() {\n"
                               "\t_ = util.Min(5, 3)\n}\n")
    files = others + [util, main]
    projects = {"go:app": files}
    rows = RowBuilder(enc, projects, {"go:app": enc.many([file_segment_text(p, t) for p, t in files])}, T=2048, seed=9)
    words = middles.words_in(main[1])
    firsts = [files[rows.context_order("go:app", len(files) - 1, main[1], words)[0]][0] for _ in range(20)]
    assert firsts.count(util[0]) == 20, firsts


JS_MODULES = {"helpers": {"trim", "RATE", "padLeft", "get"}, "util": {"deepMerge", "clone"},
              "store": {"openStore", "Store"}, "index": {"trim"}}


def test_js_named_imports_become_namespace_imports_with_qualified_uses():
    text = ("import { trim, RATE } from './helpers';\n"
            "import {\n  deepMerge,\n  clone,\n} from \"../lib/util/index.js\"\n"
            "const { openStore, Store } = require('./store');\n"
            "import { trimmed } from './other';\n\n"
            "export function run(x, y = RATE) {\n"
            "  const v = trim(x) + obj.trim + { trim: 1, key: padLeft };\n"
            "  const s = new Store(openStore(`${clone(v)}`), 'trim');\n"
            "  return deepMerge(s, [RATE]) ? trim(y) : RATE;\n"
            "}\n\n"
            "function reopen(s: Store = null): Store {\n  const again: Store = s;\n}\n")
    out, names = qualify.qualify_js_imports(text, JS_MODULES)
    assert names == {"trim", "RATE", "deepMerge", "clone", "openStore", "Store"}
    assert out.splitlines()[:4] == ["import * as helpers from './helpers';",  # quotes and semicolon kept
                                    "import * as util from \"../lib/util/index.js\"",  # index: the folder's name
                                    "const store = require('./store');",
                                    "import { trimmed } from './other';"]
    assert "export function run(x, y = helpers.RATE) {" in out
    # a property `obj.trim`, a key `{ trim: 1 }` and a quoted 'trim' are not uses; padLeft was not imported
    assert "  const v = helpers.trim(x) + obj.trim + { trim: 1, key: padLeft };" in out
    assert "new store.Store(store.openStore(`${util.clone(v)}`), 'trim')" in out
    assert "return util.deepMerge(s, [helpers.RATE]) ? helpers.trim(y) : helpers.RATE;" in out
    # TypeScript annotations, also before a default value
    assert "function reopen(s: store.Store = null): store.Store {\n  const again: store.Store = s;" in out


def test_js_imports_are_left_alone_where_qualifying_could_break_the_code():
    unchanged = [
        "import { trim as cut } from './helpers';\ncut(1);\n",  # an alias
        "import type { Store } from './store';\nlet s: Store;\n",  # a type import
        "import makeStore, { openStore } from './store';\nopenStore(makeStore);\n",  # a default import
        "import { trim, unknownName } from './helpers';\ntrim(unknownName);\n",  # a name the module does not define
        "import { trim } from './helpers';\nconst helpers = [];\ntrim(helpers);\n",  # the qualifier is taken
        "import { trim } from './helpers';\nfunction f(trim) {\n  return trim(1);\n}\n",  # a parameter shadows it
        "const { trim } = require('./helpers');\nlet RATE = 1;\nfunction trim2() {}\ntrim = null;\n",  # reassigned
        "import { get } from './helpers';\nclass A {\n  get size() {\n    return get(this);\n  }\n}\n",  # a getter
        "import { trim } from './index';\ntrim(1);\n",  # a bare ./index: the folder is not named
    ]
    for text in unchanged:
        assert qualify.qualify_js_imports(text, JS_MODULES) == (text, set()), text
    # a shorthand `{ trim }` would need `{ trim: helpers.trim }`: that module is skipped, the other one still done
    text = ("import { trim } from './helpers';\nimport { clone } from './util/index';\n"
            "export default { trim, x: clone(1) };\n")
    out, names = qualify.qualify_js_imports(text, JS_MODULES)
    assert names == {"clone"}
    assert out == ("import { trim } from './helpers';\nimport * as util from './util/index';\n"
                   "export default { trim, x: util.clone(1) };\n")


def js_projects() -> dict:
    """TS/JS projects whose files call each other's exports through named imports (ESM braces over one line or
    several, an index.ts folder module, CommonJS require)."""
    projects = {}
    for p in range(2):
        paths = ["src/mod0.ts", "src/mod1.ts", "src/shapes/index.ts", "src/mod3.js"]
        specs = ["./mod1", "./shapes", "../mod3.js", "./mod0"]
        files = []
        for f, path in enumerate(paths):
            o = (f + 1) % 4
            imported = f"computeTotal{p}{o}, RecordStore{p}{o}, MAX_ROWS_{p}{o}"
            listed = imported.replace(", ", ",\n  ")
            head = (f"const {{ {imported} }} = require('{specs[f]}');\n" if path.endswith(".js") else
                    f"import {{\n  {listed},\n}} from '{specs[f]}';\n" if f == 1
                    else f"import {{ {imported} }} from \"{specs[f]}\";\n")
            body = (f"\nexport const MAX_ROWS_{p}{f} = {f + 8};\n\n"
                    f"export function computeTotal{p}{f}(value, scale = 2) {{\n  return value * scale + {f};\n}}\n\n"
                    f"export class RecordStore{p}{f} {{\n  size() {{\n    return MAX_ROWS_{p}{f};\n  }}\n}}\n\n"
                    f"export function run{f}(items) {{\n  const store = new RecordStore{p}{o}();\n"
                    f"  const total = computeTotal{p}{o}(items, MAX_ROWS_{p}{o});\n"
                    f"  return computeTotal{p}{o}(total) + store.size();\n}}\n")
            files.append((path, head + body))
        projects[f"npm:p{p}"] = files
    return projects


def test_js_rows_qualify_named_imports_and_put_call_sites_after_the_module_name(tokenizer):
    enc, rows, exported = qualifying_rows(tokenizer, js_projects(), seed=2)
    groups = rewritten = after_module = marked = 0
    for _ in range(12):
        row = rows.row()
        for g in groups_of(enc, row):
            groups += 1
            module = re.search(r"^(?:import \* as (\w+) from |const (\w+) = require\()", g["prefix"], re.M)
            if not module:
                continue  # a group in a row's last gap, where the imported file did not fit
            rewritten += 1
            lead = module.group(1) or module.group(2)
            name = re.match(r"\w+", g["middle"])
            headers = " ".join(c.split("\n", 2)[1] for c in g["context"])
            if g["prefix"].endswith(f"{lead}.") and name and f"{lead}.{name.group(0)}" in headers:
                after_module += 1  # the included module's header lists the name, one copy away
            bare = re.search(r"(?<![.\w])(?<!function )(?<!class )(?<!const )(computeTotal\d\d|RecordStore\d\d)\(",
                             g["prefix"] + g["suffix"])
            assert not bare, bare
        marked += copy_marks_spelling(enc, row, exported)
    assert groups >= 15 and rewritten >= 0.7 * groups and after_module >= 0.9 * rewritten, \
        (groups, rewritten, after_module)
    assert marked >= 10
