"""Plain value types shared by the index modules: ranges, definitions, imports, diagnostics, options.

Positions are 0-based lines and columns in Unicode code points (Python str indices); ranges are
half-open. No LSP types here: the server converts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Range(NamedTuple):
    """A half-open span: (start_line, start_col) up to (end_line, end_col), code points, 0-based."""

    start_line: int
    start_col: int
    end_line: int
    end_col: int

    def contains(self, line: int, col: int) -> bool:
        return (self.start_line, self.start_col) <= (line, col) <= (self.end_line, self.end_col)


class Definition(NamedTuple):
    """A named definition: kind is one of function, method, class, struct, interface, trait, enum,
    type, module, constant, variable; container is the enclosing class/impl/type name or ""."""

    path: str
    name: str
    kind: str
    container: str
    name_range: Range
    full_range: Range


class ImportedName(NamedTuple):
    """One name brought in by an import: `name` as spelled at the source, `alias` if renamed."""

    name: str
    alias: str = ""

    @property
    def local(self) -> str:
        return self.alias or self.name


class Import(NamedTuple):
    """One import statement (or one module of `import a, b`).

    spec: the raw module text ("..pkg.mod", "./util", "example.com/m/pkg", "crate::a::b", "foo" for
    Rust `mod foo;`); names: imported names (empty when the module itself is bound); binds: the local
    name the module itself is bound to ("" if none); runtime: False for imports that do not execute at
    load time (Python function-local or TYPE_CHECKING imports, TS `import type`); these never form
    cycle edges."""

    spec: str
    names: tuple[ImportedName, ...]
    binds: str
    range: Range
    spec_range: Range
    runtime: bool = True
    wildcard: bool = False
    kind: str = "import"  # "import" | "reexport" (TS export-from) | "require" (CommonJS) | "mod" (Rust `mod x;`)


class Diagnostic(NamedTuple):
    """severity: "error" | "warning" | "information" | "hint"; code: "syntax-error",
    "unresolved-import" or "import-cycle"."""

    range: Range
    severity: str
    code: str
    message: str


class SkippedFile(NamedTuple):
    path: str
    reason: str


@dataclass(frozen=True)
class IndexOptions:
    """What the walk takes in: a size cap in bytes, extra exclude globs (gitignore syntax), and
    whether secrets (.env*, keys, credential files) are indexed."""

    max_file_size: int = 1_000_000
    exclude: tuple[str, ...] = ()
    include_secrets: bool = False


@dataclass
class FileFacts:
    """What one parse of one file yields; compact (no tree-sitter objects), picklable."""

    language: str
    definitions: list[Definition] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    syntax_errors: list[tuple[Range, str]] = field(default_factory=list)
    package: str = ""  # Go: the `package` clause name
