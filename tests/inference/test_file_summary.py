"""Names lines of segment headers: the top-level public names per language and the qualifier an importer uses."""

from inference.file_summary import MAX_CHARS, names_line, qualifier, top_level_names
from inference.fim import FORMATS


def test_python_lists_public_top_level_names_in_file_order():
    text = ('"""Doc."""\nimport os\n\nRATE = 3\n_cache = {}\nlimit: int = 10\n\n\nclass Invoice:\n    def total(self):\n'
            '        inner = 1\n\n\nasync def fetch(url):\n    def helper():\n        pass\n\n\ndef _private():\n    pass\n\n\n'
            'def trim(record):\n    return record\n\n\nif __name__ == "__main__":\n    trim(1)\n')
    assert top_level_names("billing/helpers.py", text) == ["RATE", "limit", "Invoice", "fetch", "trim"]
    assert names_line("billing/helpers.py", text) == (
        "# helpers: helpers.RATE helpers.limit helpers.Invoice helpers.fetch helpers.trim\n")


def test_qualifier_is_the_name_an_importer_uses():
    assert qualifier("pkg/sub/__init__.py", "") == "sub."
    assert qualifier("src/util/index.ts", "") == "util."
    assert qualifier("src/engine/mod.rs", "") == "engine::"
    assert qualifier("srv/handler.go", "// Package x.\npackage server\n") == "server."
    assert qualifier("srv/handler.go", "no clause") is None
    assert qualifier("my-app/date-utils.js", "") == "date_utils."
    assert qualifier("README.md", "# title") is None


def test_go_rust_and_typescript_keep_what_other_files_can_reach():
    go = "package srv\n\nconst MaxRetries = 3\nconst local = 1\n\nfunc ParseHeader(raw string) string {\n\treturn raw\n}\n" \
         "\nfunc (s *Server) Serve() {}\n\nfunc handle() {}\n\ntype Server struct{}\n"
    assert names_line("srv/file.go", go) == "# srv: srv.MaxRetries srv.ParseHeader srv.Server\n"
    rust = "pub fn parse(x: u8) {}\nfn hidden() {}\npub(crate) struct Table;\npub const fn size() -> usize { 1 }\n" \
           "impl Table {\n    pub fn get(&self) {}\n}\n"
    assert names_line("src/table.rs", rust) == "# table: table::parse table::Table table::size\n"
    ts = "export interface Options {}\nexport default class Client {}\nexport const VERSION = '1'\n" \
         "function local() {}\n  const nested = 1\nexport async function connect() {}\n"
    assert top_level_names("src/client.ts", ts) == ["Options", "Client", "VERSION", "local", "connect"]


def test_a_long_line_stops_at_a_whole_name_and_files_without_names_get_none():
    text = "".join(f"def function_number_{i}(x):\n    return x\n\n" for i in range(200))
    line = names_line("pkg/many.py", text)
    assert len(line) <= MAX_CHARS + 1 and line.endswith("\n")
    assert line.rstrip("\n").split(" ")[-1] in {f"many.function_number_{i}" for i in range(200)}
    assert names_line("pkg/empty.py", "import os\n\n# nothing defined\n") == ""
    assert names_line("data/table.csv", "a,b\n") == ""


def test_only_a_checkpoint_trained_with_names_lines_gets_them_and_never_in_the_live_tail():
    import dataclasses

    text = "def trim(record):\n    return record\n"
    plain, named = FORMATS["msa"], dataclasses.replace(FORMATS["msa"], segment_names=True)
    assert plain.file_header("billing/helpers.py", text) == "<|file_sep|>billing/helpers.py\n"
    assert named.file_header("billing/helpers.py", text) == "<|file_sep|>billing/helpers.py\n# helpers: helpers.trim\n"
    tail = "".join(piece for kind, piece in named.tail("billing/helpers.py", text, "") if kind == "text")
    assert "# helpers:" not in tail
