"""WorkspaceIndex: the live index of one workspace (files, facts, resolved imports, import graph,
cycles) with build, incremental updates and diagnostics. Navigation queries (definition, references,
symbols, search, scope) are in navigation.py; this module owns the state and keeps it consistent.

Thread-safe: every public method takes one re-entrant lock; build() parses outside it and swaps the
new state in at the end, then re-applies any open buffer (buffer text always wins over disk).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, defaultdict
from typing import Callable, NamedTuple

from . import graph
from .discovery import CONFIG_NAMES, discover, path_excluded, read_source
from .extract import extract_with_tree
from .languages import language_of
from .model import Definition, Diagnostic, FileFacts, Import, IndexOptions, SkippedFile
from .navigation import Navigation
from .parsing import default_workers, parse_many
from .resolve import Layout, Resolution, resolve

log = logging.getLogger("msa.index")

_NO_RESOLUTION = Resolution((), False)
_TREES_KEPT = 16
_NEVER_RUN = (".pyi", ".d.ts")  # stubs and declaration files are never executed: no cycle edges
# module text that can create names the syntax does not show
_DYNAMIC_MARKERS = ("globals()", "sys.modules[", "global ", "exec(", "__dict__", "setattr(")


class IndexedFile(NamedTuple):
    language: str
    text: str
    facts: FileFacts


class CycleInfo(NamedTuple):
    cycle: tuple[str, ...]  # a -> b -> ... -> back to a
    import_: Import  # this file's import that leads to the next file of the cycle


class WorkspaceIndex(Navigation):
    def __init__(self, root: str | None = None, options: IndexOptions | None = None):
        self.root = os.path.abspath(root) if root else ""
        self.options = options or IndexOptions()
        self._lock = threading.RLock()
        self._files: dict[str, IndexedFile] = {}
        self._resolutions: dict[str, list[Resolution]] = {}
        self._skipped: dict[str, str] = {}
        self._config: dict[str, str] = {}
        self._overlays: dict[str, str] = {}
        self._trees: dict[str, tuple] = {}  # path -> (bytes, tree), recently edited files only
        self._removed_during_build: set[str] = set()
        self._line_cache: dict[str, tuple[str, list[str]]] = {}  # path -> (text, its lines)
        self._by_name: dict[str, dict[str, list[Definition]]] = defaultdict(dict)  # name -> path -> defs
        self._layout = Layout(self.root, {}, {})
        self._edges: dict[str, set[str]] = {}  # runtime, cycle-relevant edges
        self._importers: dict[str, set[str]] = defaultdict(set)  # target -> files importing it
        self._cycles: list[tuple[str, ...]] = []
        self._cycle_of: dict[str, CycleInfo] = {}
        self.build_seconds = 0.0

    # ------------------------------------------------------------------ building

    def build(self, root: str | None = None, options: IndexOptions | None = None,
              progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> None:
        """Index every file under root (replacing any earlier state)."""
        start = time.perf_counter()
        root = os.path.abspath(root) if root else self.root
        if not root:
            raise ValueError("WorkspaceIndex.build needs a root directory")
        options = options or self.options
        with self._lock:
            self._removed_during_build = set()
        found = discover(root, options)
        files: dict[str, IndexedFile] = {}
        skipped = {s.path: s.reason for s in found.skipped}
        for parsed in parse_many(found.files, options.max_file_size, workers or default_workers(), progress):
            if parsed.facts is None:
                log.info("skipped %s: %s", parsed.path, parsed.skip_reason)
                skipped[parsed.path] = parsed.skip_reason
            else:
                files[parsed.path] = IndexedFile(parsed.language, parsed.text, parsed.facts)
        with self._lock:
            self.root, self.options = root, options
            self._files, self._skipped, self._config = files, skipped, dict(found.config)
            self._by_name = defaultdict(dict)
            self._trees = {}
            for path, entry in files.items():
                self._add_definitions(entry.facts.definitions)
            for path in self._removed_during_build:
                if path in files and not os.path.exists(path):
                    self._drop(path)
            self._removed_during_build = set()
            for path, text in list(self._overlays.items()):
                self._store(path, text)
            self._relink_all()
            self.build_seconds = time.perf_counter() - start

    def update_file(self, path: str, text: str) -> str:
        """Take `text` as the content of `path` (an open buffer; it wins over disk until
        reload_file or remove_file). Returns "" when indexed, else the reason it is not."""
        path = os.path.abspath(path)
        with self._lock:
            if os.path.basename(path) in CONFIG_NAMES:
                self._config[path] = text
                self._relink_all()
                return "not a source file (config)"
            known = path in self._files  # already accepted: skip the gitignore walk on every keystroke
            reason = path_excluded(self.root, path, self.options) if self.root and not known else ""
            if not reason and language_of(path) is None and path not in self._files:
                reason = "unsupported language"
            if not reason and len(text) > self.options.max_file_size // 4 and len(text.encode("utf-8", "surrogatepass")) > self.options.max_file_size:
                reason = f"too large (over {self.options.max_file_size} bytes)"
            if reason:
                return reason
            self._overlays[path] = text
            is_new = path not in self._files
            old_edges = self._edges.get(path, set())
            old_names = None if is_new else (self._names_in(path), self._static_names(path))
            self._store(path, text)
            if is_new:
                self._relink_all()
            else:
                self._resolve_file(path)
                edges_changed = self._edges.get(path, set()) != old_edges
                if (self._names_in(path), self._static_names(path)) != old_names:
                    # importers check the names they take against this file's names
                    for importer in list(self._importers.get(path, ())):
                        before = self._edges.get(importer, set())
                        self._resolve_file(importer)
                        edges_changed |= self._edges.get(importer, set()) != before
                if edges_changed:
                    self._recompute_cycles()
            return ""

    def reload_file(self, path: str) -> str:
        """Drop any buffer for `path` and read it from disk again (removing it if it is gone or
        now skipped). Returns "" when indexed, else the reason it is not."""
        path = os.path.abspath(path)
        with self._lock:
            self._overlays.pop(path, None)
            if os.path.basename(path) in CONFIG_NAMES:
                text, reason = read_source(path, self.options.max_file_size)
                if text is None:
                    self._config.pop(path, None)
                else:
                    self._config[path] = text
                self._relink_all()
                return "not a source file (config)"
            reason = path_excluded(self.root, path, self.options) if self.root else ""
            text = None
            if not reason:
                text, reason = read_source(path, self.options.max_file_size)
            if text is None:
                self._drop(path)
                if os.path.exists(path) and not reason.startswith("unsupported"):
                    self._skipped[path] = reason
                self._relink_all()
                return reason
            self._overlays[path] = text
            result = self.update_file(path, text)
            self._overlays.pop(path, None)
            return result

    def remove_file(self, path: str) -> None:
        """Forget `path` (deleted on disk, or its buffer closed and the file gone)."""
        path = os.path.abspath(path)
        with self._lock:
            self._removed_during_build.add(path)
            self._overlays.pop(path, None)
            self._skipped.pop(path, None)
            if self._config.pop(path, None) is not None or path in self._files:
                self._drop(path)
                self._relink_all()

    def _store(self, path: str, text: str) -> None:
        language = _language_for(path, self._files)
        if language is None:
            return
        old = self._files.get(path)
        if old is not None:
            self._remove_definitions(old.facts.definitions)
        previous = self._trees.pop(path, None)
        try:
            facts, parsed = extract_with_tree(path, text, language, previous if old is not None else None)
            self._trees[path] = parsed  # kept only for recently edited files, for incremental reparses
        except Exception:  # e.g. absurdly deep nesting: keep the text, know nothing about it
            log.exception("could not analyse %s; indexed as text only", path)
            facts = FileFacts(language)
        while len(self._trees) > _TREES_KEPT:
            self._trees.pop(next(iter(self._trees)))
        self._files[path] = IndexedFile(language, text, facts)
        self._skipped.pop(path, None)
        self._add_definitions(facts.definitions)

    def _drop(self, path: str) -> None:
        self._trees.pop(path, None)
        old = self._files.pop(path, None)
        if old is not None:
            self._remove_definitions(old.facts.definitions)
        self._resolutions.pop(path, None)

    def _add_definitions(self, definitions: list[Definition]) -> None:
        for definition in definitions:
            self._by_name[definition.name].setdefault(definition.path, []).append(definition)

    def _remove_definitions(self, definitions: list[Definition]) -> None:
        for definition in definitions:
            bucket = self._by_name.get(definition.name)
            if bucket is not None:
                bucket.pop(definition.path, None)
                if not bucket:
                    del self._by_name[definition.name]

    def _named(self, name: str) -> list[Definition]:
        return [d for defs in self._by_name.get(name, {}).values() for d in defs]

    # ------------------------------------------------------------------ linking

    def _relink_all(self) -> None:
        """Rebuild the layout and re-resolve every import (file set or config changed)."""
        present = {p: language_of(p) for p in self._skipped if language_of(p) and os.path.exists(p)}
        present.update((p, f.language) for p, f in self._files.items())
        self._layout = Layout(self.root, present, self._config,
                              self._names_in, self._static_names)
        self._edges = {}
        self._importers = defaultdict(set)
        self._resolutions = {}
        for path in self._files:
            self._resolve_file(path)
        self._recompute_cycles()

    def _resolve_file(self, path: str) -> None:
        entry = self._files[path]
        for old in self._resolutions.get(path, ()):
            for target in old.targets:
                self._importers.get(target, set()).discard(path)
        resolutions = []
        edges = set()
        for imp in entry.facts.imports:
            try:
                res = resolve(self._layout, path, entry.language, imp)
            except Exception:  # one odd import must not break the index
                log.exception("resolving %r in %s failed", imp.spec, path)
                res = _NO_RESOLUTION
            resolutions.append(res)
            for target in res.targets:
                if target != path:
                    self._importers[target].add(path)
                    if imp.runtime and imp.kind != "mod" and entry.language != "rust" and not (
                            path.endswith(_NEVER_RUN) or target.endswith(_NEVER_RUN)):
                        edges.add(target)
        self._resolutions[path] = resolutions
        self._edges[path] = edges

    def _names_in(self, path: str) -> set[str]:
        entry = self._files.get(path)
        if entry is None:
            return set()
        names = {d.name for d in entry.facts.definitions if not d.container}
        for imp in entry.facts.imports:
            names.update(n.local for n in imp.names)
            if imp.binds:
                names.add(imp.binds)
        return names

    def _static_names(self, path: str) -> bool:
        entry = self._files.get(path)
        if entry is None or entry.facts.syntax_errors or any(imp.wildcard for imp in entry.facts.imports):
            return False
        if any(d.name == "__getattr__" and not d.container for d in entry.facts.definitions):
            return False
        text = entry.text
        return not any(marker in text for marker in _DYNAMIC_MARKERS)

    def _recompute_cycles(self) -> None:
        self._cycles = [tuple(c) for c in graph.cycles(self._edges)]
        self._cycle_of = {}
        for cycle in self._cycles:
            for i, path in enumerate(cycle):
                if path in self._cycle_of:
                    continue
                nxt = cycle[(i + 1) % len(cycle)]
                imp = self._closing_import(path, nxt)
                if imp is not None:
                    self._cycle_of[path] = CycleInfo(cycle, imp)

    def _closing_import(self, path: str, target: str) -> Import | None:
        entry = self._files[path]
        for imp, res in zip(entry.facts.imports, self._resolutions.get(path, ())):
            if target in res.targets and imp.runtime:
                return imp
        return None

    # ------------------------------------------------------------------ state queries

    def has_file(self, path: str) -> bool:
        with self._lock:
            return os.path.abspath(path) in self._files

    @property
    def files(self) -> list[str]:
        with self._lock:
            return sorted(self._files)

    @property
    def skipped(self) -> list[SkippedFile]:
        with self._lock:
            return [SkippedFile(p, r) for p, r in sorted(self._skipped.items())]

    def language(self, path: str) -> str | None:
        entry = self._files.get(os.path.abspath(path))
        return entry.language if entry else None

    def text(self, path: str) -> str | None:
        """The indexed text of a file (buffer text when open), or None when it is not indexed."""
        entry = self._files.get(os.path.abspath(path))
        return entry.text if entry else None

    def line_text(self, path: str, line: int) -> str:
        """One line of the indexed text ("" past the end), without its line break."""
        with self._lock:
            text = self.text(path) or ""
            cached = self._line_cache.get(path)
            if cached is None or cached[0] is not text:
                cached = (text, text.split("\n"))
                self._line_cache[path] = cached
                while len(self._line_cache) > _TREES_KEPT:
                    self._line_cache.pop(next(iter(self._line_cache)))
        lines = cached[1]
        return lines[line].rstrip("\r") if 0 <= line < len(lines) else ""

    def language_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(f.language for f in self._files.values()))

    def symbol_count(self) -> int:
        with self._lock:
            return sum(len(f.facts.definitions) for f in self._files.values())

    def edge_count(self) -> int:
        """Distinct (file, imported workspace file) pairs."""
        with self._lock:
            return sum(len(v) for v in self._importers.values())

    def imports_of(self, path: str) -> list[tuple[Import, Resolution]]:
        with self._lock:
            entry = self._files.get(os.path.abspath(path))
            if entry is None:
                return []
            return list(zip(entry.facts.imports, self._resolutions.get(os.path.abspath(path), ())))

    def importers_of(self, path: str) -> list[str]:
        with self._lock:
            return sorted(self._importers.get(os.path.abspath(path), ()))

    def import_cycles(self) -> list[tuple[str, ...]]:
        with self._lock:
            return list(self._cycles)

    def cycle_of(self, path: str) -> CycleInfo | None:
        with self._lock:
            return self._cycle_of.get(os.path.abspath(path))

    def diagnostics(self, path: str) -> list[Diagnostic]:
        """Syntax errors, unresolved workspace imports and the file's import cycle, sorted."""
        path = os.path.abspath(path)
        with self._lock:
            entry = self._files.get(path)
            if entry is None:
                return []
            out = [Diagnostic(rng, "error", "syntax-error", msg) for rng, msg in entry.facts.syntax_errors]
            for imp, res in zip(entry.facts.imports, self._resolutions.get(path, ())):
                if res.unresolved:
                    out.append(Diagnostic(imp.spec_range, "warning", "unresolved-import",
                                          f"unresolved import {imp.spec!r}: {res.detail or 'no workspace file matches'}"))
            info = self._cycle_of.get(path)
            if info is not None:
                names = [self._display(p) for p in info.cycle + (info.cycle[0],)]
                out.append(Diagnostic(info.import_.range, "warning", "import-cycle",
                                      "import cycle: " + " -> ".join(names)))
            out.sort()
            return out

    def all_diagnostics(self) -> dict[str, list[Diagnostic]]:
        with self._lock:
            return {path: self.diagnostics(path) for path in sorted(self._files)}

    def _display(self, path: str) -> str:
        if self.root and path.startswith(self.root + os.sep):
            return path[len(self.root) + 1 :].replace(os.sep, "/")
        return path


def _language_for(path: str, files: dict[str, IndexedFile]) -> str | None:
    entry = files.get(path)
    return entry.language if entry else language_of(path)
