"""The tree-sitter workspace index: which files a workspace has, what each defines and imports,
where imports lead, the import graph's cycles, and the diagnostics that follow. Pure Python, no LSP
types; the server wraps it and converts positions.

Contract (positions are 0-based line and column in code points; ranges are half-open; paths are
absolute strings as given, never resolved through symlinks):

    index = WorkspaceIndex(root=None, options=None)   # both may also be given to build()
    index.build(root, IndexOptions(max_file_size=1_000_000, exclude=("*.min.js",), include_secrets=False),
                progress=lambda done, total: ..., workers=None)   # walks, parses (process pool), links
    index.update_file(path, text) -> ""|reason    # open buffer text; wins over disk until reload/remove.
        When the file's top-level names change, its importers are re-resolved too: republish
        diagnostics for importers_of(path) as well as for the file and the files on cycles
    index.reload_file(path) -> ""|reason          # re-read from disk (didClose, watched-file change)
    index.remove_file(path)                       # deleted file
    index.files, index.skipped (list[SkippedFile(path, reason)]), index.language_counts(),
    index.symbol_count(), index.edge_count(), index.build_seconds, index.text(path), index.line_text(path, n)
    index.language(path) -> "python"|"typescript"|"tsx"|"javascript"|"go"|"rust"|None
    index.word_at(path, line, col) -> (word, Range) | None   # the identifier-like word at a position

    index.definitions(name) -> list[Definition(path, name, kind, container, name_range, full_range)]
    index.definition_at(path, line, col) -> list[Definition]   # kind "module" (zero ranges) for a file;
        a parameter/local variable gives kind "variable", container = its function, name_range = its
        first binding, full_range = the function (its scope); references_to() keeps to that scope
    index.references(path, line, col) -> list[Location(path, range)]     # declaration included
    index.references_to(definition) -> list[Location]
    index.symbols_in(path) -> list[Symbol(definition, children)]          # nested document symbols
    index.search(query, limit=200) -> list[Definition]                    # fuzzy subsequence, best first
    index.symbols_in_scope(path) -> list[Definition]                      # completion candidates
    index.members_of(path, qualifier) -> list[Definition]   # completion after `qualifier.` (an imported
        module's public names, container = qualifier)
    index.imports_of(path) -> list[(Import, Resolution)]; index.importers_of(path) -> list[str]
    index.import_cycles() -> list[tuple[path, ...]]    # a -> b -> c -> (a)
    index.cycle_of(path) -> CycleInfo(cycle, import_) | None   # import_ is the cycle-closing Import
    index.diagnostics(path) -> list[Diagnostic(range, severity, code, message)]
        codes: "syntax-error" (error), "unresolved-import" (warning), "import-cycle" (warning, one per
        file on a cycle, on its cycle-closing import, naming the whole cycle a -> b -> c -> a)
    index.all_diagnostics() -> dict[path, list[Diagnostic]]

Definition kinds: function, method, class, struct, interface, trait, enum, type, module, constant,
variable, macro. Import(spec, names, binds, range, spec_range, runtime, wildcard, kind): runtime is
False for function-local / TYPE_CHECKING Python imports and TS `import type` (never cycle edges);
Rust `mod`/`use`, stubs (.pyi) and declaration files (.d.ts) never form cycles. The walk always
skips .git/, .hg/, .svn/ and __pycache__/. Every public method is thread-safe.
"""

from .model import Definition, Diagnostic, FileFacts, Import, ImportedName, IndexOptions, Range, SkippedFile
from .navigation import Location, Symbol
from .resolve import Resolution
from .workspace import CycleInfo, WorkspaceIndex

__all__ = [
    "CycleInfo", "Definition", "Diagnostic", "FileFacts", "Import", "ImportedName", "IndexOptions",
    "Location", "Range", "Resolution", "SkippedFile", "Symbol", "WorkspaceIndex",
]
