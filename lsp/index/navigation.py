"""Navigation queries over a WorkspaceIndex: definitions by name, go-to-definition, references,
document symbols, workspace symbol search and the names in scope for completion.

A mixin: it reads the index state owned by workspace.py and never changes it. Identifier
occurrences are found by re-parsing only the files that can hold them (never kept in memory).
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from .extract import identifiers
from .local_names import binding_ranges, local_bindings, local_references
from .model import Definition, Range

_WORD = re.compile(r"[\w$]+")
_QUALIFIER = re.compile(r"([\w$]+)\s*(?:\.|::)\s*$")
_ZERO = Range(0, 0, 0, 0)
_CONTAINER_KINDS = ("class", "struct", "interface", "trait", "enum", "module", "type")
_MAX_SEARCH = 200


class Symbol(NamedTuple):
    """A document symbol: a definition and the definitions nested in it."""

    definition: Definition
    children: list


class Location(NamedTuple):
    path: str
    range: Range


def _module_definition(path: str, name: str) -> Definition:
    return Definition(path, name, "module", "", _ZERO, _ZERO)


class Navigation:
    # ------------------------------------------------------------------ by name

    def definitions(self, name: str) -> list[Definition]:
        with self._lock:
            return sorted(self._named(name))

    def word_at(self, path: str, line: int, col: int) -> tuple[str, Range] | None:
        """The identifier-like word touching (line, col), with its range."""
        line_text = self.line_text(path, line)
        for match in _WORD.finditer(line_text):
            if match.start() <= col <= match.end():
                return match.group(), Range(line, match.start(), line, match.end())
        return None

    def _exported(self, path: str, name: str, depth: int = 0) -> list[Definition]:
        """Definitions of `name` reachable from module `path`: its own, or through its imports
        (re-exports), a few levels deep."""
        entry = self._files.get(path)
        if entry is None or depth > 4:
            return []
        own = [d for d in entry.facts.definitions if d.name == name and not d.container]
        if own:
            return own
        found: list[Definition] = []
        for imp, res in zip(entry.facts.imports, self._resolutions.get(path, ())):
            for imported in imp.names:
                if imported.local == name:
                    for target in res.targets:
                        if self._module_name_matches(target, imported.name):
                            found.append(_module_definition(target, imported.name))
                        else:
                            found.extend(self._exported(target, imported.name, depth + 1))
            if imp.wildcard:
                for target in res.targets:
                    found.extend(self._exported(target, name, depth + 1))
            if found:
                return found
        if entry.language == "go":  # a Go package's names live in all its files
            for sibling in self._layout.by_dir.get(os.path.dirname(path), ()):
                if sibling != path and sibling.endswith(".go") and not depth:
                    sib = self._files.get(sibling)
                    found.extend(d for d in sib.facts.definitions if d.name == name and not d.container)
        return found

    @staticmethod
    def _module_name_matches(target: str, name: str) -> bool:
        stem = os.path.splitext(os.path.basename(target))[0]
        if stem in ("__init__", "mod", "index"):
            stem = os.path.basename(os.path.dirname(target))
        return stem == name

    def definition_at(self, path: str, line: int, col: int) -> list[Definition]:
        """Where the identifier under the cursor is defined: this file first, then through its
        imports, then a workspace-wide unique name. Empty when nothing is known."""
        path = os.path.abspath(path)
        with self._lock:
            entry = self._files.get(path)
            if entry is None:
                return []
            for imp, res in zip(entry.facts.imports, self._resolutions.get(path, ())):
                if imp.spec_range.contains(line, col) and res.targets:
                    return [_module_definition(t, imp.spec) for t in res.targets]
            hit = self.word_at(path, line, col)
            if hit is None:
                return []
            word, rng = hit
            before = self.line_text(path, line)[: rng.start_col]
            if before.rstrip().endswith((".", "::")):
                qualifier = _QUALIFIER.search(before)
                found = self._through_module(path, entry, qualifier.group(1), word) if qualifier else []
                if found:
                    return found
                members = [d for d in self._named(word) if d.container]
                if qualifier is not None and qualifier.group(1) in ("self", "this", "cls", "Self"):
                    owner = self._enclosing_type(entry, line)
                    own = [d for d in members if d.path == path and d.container == owner]
                    if own:
                        return own
                if members:
                    return sorted(members)
            function = self._enclosing_function(entry, line, col)
            if function is not None and not function.name_range.contains(line, col):
                bindings = local_bindings(path, entry.text, entry.language, function.full_range, word)
                if bindings:  # a parameter or local variable: its scope is the function
                    return [Definition(path, word, "variable", function.name, bindings[0], function.full_range)]
            local = [d for d in entry.facts.definitions if d.name == word]
            if local:
                return [local[0]] if any(d.name_range == rng for d in local) else sorted(local)[:1]
            found = self._exported(path, word)
            if not found:
                for imp, res in zip(entry.facts.imports, self._resolutions.get(path, ())):
                    if imp.binds == word and res.targets:
                        found = [_module_definition(t, imp.spec) for t in res.targets]
                        break
            if found:
                return sorted(set(found))
            candidates = self._named(word)
            if len({(d.path, d.name_range) for d in candidates}) == 1:
                return [candidates[0]]
            return []

    @staticmethod
    def _enclosing_function(entry, line: int, col: int) -> Definition | None:
        """The innermost indexed function or method whose text holds the position."""
        best = None
        for d in entry.facts.definitions:
            if d.kind in ("function", "method") and d.full_range.contains(line, col):
                if best is None or d.full_range[:2] >= best.full_range[:2]:
                    best = d
        return best

    @staticmethod
    def _shadowing_functions(path: str, entry, name: str) -> list[Range]:
        """Ranges of the file's functions that bind `name` locally (so it means something else there)."""
        functions = [d.full_range for d in entry.facts.definitions if d.kind in ("function", "method")]
        if not functions:
            return []
        bindings = binding_ranges(path, entry.text, entry.language, name)
        return [f for f in functions if any(f.contains(b.start_line, b.start_col) for b in bindings)]

    def _is_local(self, definition: Definition) -> bool:
        entry = self._files.get(definition.path)
        return bool(definition.container) and entry is not None and definition not in entry.facts.definitions

    @staticmethod
    def _enclosing_type(entry, line: int) -> str:
        """The innermost class/struct/impl container around `line` (methods name their container)."""
        best = ""
        for d in entry.facts.definitions:
            if d.container and d.full_range.start_line <= line <= d.full_range.end_line:
                best = d.container
        return best

    def _add_exports(self, out: dict, target: str, binding: str) -> None:
        """A module's public top-level names, as `binding.name` (container = the local binding)."""
        module = self._files.get(target)
        for d in module.facts.definitions if module else ():
            if d.container or d.name.startswith("_") or (module.language == "go" and not d.name[:1].isupper()):
                continue
            out.setdefault((d.name, binding), d._replace(container=binding))

    def members_of(self, path: str, qualifier: str) -> list[Definition]:
        """Completion after `qualifier.` (or `qualifier::`) in `path`: the public top-level names
        of the module(s) that `qualifier` is bound to by an import (Go: exported names only),
        each with container = qualifier. Empty when `qualifier` is not an imported module."""
        path = os.path.abspath(path)
        with self._lock:
            entry = self._files.get(path)
            out: dict = {}
            for imp, res in zip(entry.facts.imports if entry else (), self._resolutions.get(path, ())):
                targets = res.targets if imp.binds == qualifier else ()
                for imported in imp.names:
                    if imported.local == qualifier:
                        targets = [t for t in res.targets if self._module_name_matches(t, imported.name)]
                for target in targets:
                    self._add_exports(out, target, qualifier)
            return sorted(out.values(), key=lambda d: d.name)

    def _through_module(self, path, entry, module_name: str, word: str) -> list[Definition]:
        for imp, res in zip(entry.facts.imports, self._resolutions.get(path, ())):
            bound = imp.binds or next((n.local for n in imp.names if n.local == module_name), "")
            if bound == module_name and res.targets:
                found = []
                for target in res.targets:
                    found.extend(self._exported(target, word))
                if found:
                    return sorted(set(found))
        return []

    # ------------------------------------------------------------------ references

    def references(self, path: str, line: int, col: int) -> list[Location]:
        """Every occurrence of the symbol under the cursor across the workspace (declaration
        included). A name with no workspace definition is searched in this file only."""
        path = os.path.abspath(path)
        with self._lock:
            targets = self.definition_at(path, line, col)
            targets = [d for d in targets if d.kind != "module"]
            if targets:
                return self.references_to(targets[0])
            hit = self.word_at(path, line, col)
            entry = self._files.get(path)
            if hit is None or entry is None:
                return []
            return [Location(path, r) for _, r in identifiers(path, entry.text, entry.language, hit[0])]

    def references_to(self, definition: Definition) -> list[Location]:
        """Occurrences of `definition`'s name in its file and in files that import it (directly,
        through re-exports, or as a qualified `module.name`), plus same-package Go files."""
        with self._lock:
            name = definition.name
            if self._is_local(definition):  # a local variable: only inside its function
                entry = self._files[definition.path]
                return [Location(definition.path, rng) for rng in
                        local_references(definition.path, entry.text, entry.language, definition.full_range, name)]
            full_files = {definition.path}
            qualified_files: set[str] = set()
            frontier = [definition.path]
            origin = self._files.get(definition.path)
            if origin and origin.language == "go":
                same_package = [p for p in self._layout.by_dir.get(os.path.dirname(definition.path), ()) if p.endswith(".go")]
                full_files.update(same_package)
                frontier.extend(same_package)
            seen = set(frontier)
            while frontier:
                source = frontier.pop()
                for importer in sorted(self._importers.get(source, ())):
                    entry = self._files.get(importer)
                    if entry is None:
                        continue
                    for imp, res in zip(entry.facts.imports, self._resolutions.get(importer, ())):
                        if source not in res.targets:
                            continue
                        if imp.wildcard or any(n.name == name for n in imp.names):
                            full_files.add(importer)
                            if importer not in seen:
                                seen.add(importer)
                                frontier.append(importer)
                        else:
                            qualified_files.add(importer)
            out: list[Location] = []
            for path in sorted(full_files | qualified_files):
                entry = self._files.get(path)
                if entry is None:
                    continue
                only_qualified = path not in full_files and not definition.container
                shadowed = [] if definition.container else self._shadowing_functions(path, entry, name)
                for _, rng in identifiers(path, entry.text, entry.language, name):
                    if rng != definition.name_range and any(s.contains(rng.start_line, rng.start_col) for s in shadowed):
                        continue  # a local variable of the same name, not this definition
                    if only_qualified or (definition.container and path != definition.path and path not in full_files):
                        before = self.line_text(path, rng.start_line)[: rng.start_col].rstrip()
                        if not (before.endswith(".") or before.endswith("::")):
                            continue
                    out.append(Location(path, rng))
            return out

    # ------------------------------------------------------------------ symbols

    def symbols_in(self, path: str) -> list[Symbol]:
        """Document symbols, nested by container (classes hold methods, impls hold functions)."""
        with self._lock:
            entry = self._files.get(os.path.abspath(path))
            if entry is None:
                return []
            roots: list[Symbol] = []
            open_symbols: list[Symbol] = []
            types: dict[str, Symbol] = {}
            for definition in sorted(entry.facts.definitions, key=lambda d: (d.full_range[:2], -d.full_range[2])):
                symbol = Symbol(definition, [])
                while open_symbols and not _encloses(open_symbols[-1].definition, definition):
                    open_symbols.pop()
                if open_symbols:
                    open_symbols[-1].children.append(symbol)
                elif definition.container in types:  # Go methods, Rust impl blocks: outside their type
                    types[definition.container].children.append(symbol)
                else:
                    roots.append(symbol)
                if definition.kind in _CONTAINER_KINDS:
                    open_symbols.append(symbol)
                    types.setdefault(definition.name, symbol)
            return roots

    def search(self, query: str, limit: int = _MAX_SEARCH) -> list[Definition]:
        """Workspace symbols whose name contains `query` as a case-insensitive subsequence, best
        first (exact, prefix, substring, then scattered matches; shorter names first)."""
        q = query.lower()
        with self._lock:
            names = list(self._by_name)
        scored = []
        for name in names:
            lower = name.lower()
            if q and not _subsequence(q, lower):
                continue
            if lower == q:
                rank = 0
            elif lower.startswith(q):
                rank = 1
            elif q in lower:
                rank = 2
            else:
                rank = 3
            scored.append((rank, len(name), name))
        scored.sort()
        out: list[Definition] = []
        with self._lock:
            for _, _, name in scored:
                out.extend(sorted(self._named(name)))
                if len(out) >= limit:
                    break
        return out[:limit]

    def symbols_in_scope(self, path: str) -> list[Definition]:
        """Names visible in `path` for completion: its own definitions, each imported name (as
        defined in its module when resolved), modules bound by imports, and the exports of
        wildcard-imported modules (and, for Go, of the other files of the package)."""
        path = os.path.abspath(path)
        with self._lock:
            entry = self._files.get(path)
            if entry is None:
                return []
            out: dict[tuple[str, str], Definition] = {}
            for d in entry.facts.definitions:
                out.setdefault((d.name, d.container), d)
            for imp, res in zip(entry.facts.imports, self._resolutions.get(path, ())):
                if imp.binds:
                    target = res.targets[0] if res.targets else path
                    out.setdefault((imp.binds, ""), _module_definition(target, imp.binds))
                for imported in imp.names:
                    defs = []
                    for target in res.targets:
                        if self._module_name_matches(target, imported.name):
                            defs.append(_module_definition(target, imported.name))
                        else:
                            defs.extend(self._exported(target, imported.name))
                    if defs:
                        d = defs[0]
                        out.setdefault((imported.local, ""), d._replace(name=imported.local))
                    else:
                        out.setdefault((imported.local, ""), Definition(path, imported.local, "variable", "", imp.range, imp.range))
                if imp.wildcard:
                    for target in res.targets:
                        module = self._files.get(target)
                        for d in module.facts.definitions if module else ():
                            if not d.container and not d.name.startswith("_"):
                                out.setdefault((d.name, ""), d)
            if entry.language == "go":
                for sibling in self._layout.by_dir.get(os.path.dirname(path), ()):
                    sib = self._files.get(sibling)
                    if sibling != path and sib is not None and sib.language == "go":
                        for d in sib.facts.definitions:
                            out.setdefault((d.name, d.container), d)
            return list(out.values())


def _encloses(outer: Definition, inner: Definition) -> bool:
    o, i = outer.full_range, inner.full_range
    return (o.start_line, o.start_col) <= (i.start_line, i.start_col) and (i.end_line, i.end_col) <= (o.end_line, o.end_col)


def _subsequence(needle: str, hay: str) -> bool:
    it = iter(hay)
    return all(ch in it for ch in needle)
