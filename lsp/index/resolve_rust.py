"""Rust import resolution: `mod foo;` to foo.rs or foo/mod.rs beside (or below) the declaring file,
and `use crate::/self::/super::` paths (and the crate's own name, and paths starting with a child
module) to the file of the longest module prefix; the next segment must then be an item or module
of that file. Other paths (std, dependencies) are external."""

from __future__ import annotations

import os
import re

from .model import Import
from .resolve import EXTERNAL, Resolution

_PACKAGE_NAME = re.compile(r"^\s*\[package\][^\[]*?^\s*name\s*=\s*\"([^\"]+)\"", re.MULTILINE | re.DOTALL)
_ROOT_FILES = ("lib.rs", "main.rs")


class RustLayout:
    def __init__(self, layout):
        self.layout = layout
        self.crates: dict[str, str] = {}  # src directory -> crate name ("" if unknown)
        for path, text in layout.config.items():
            if os.path.basename(path) == "Cargo.toml":
                match = _PACKAGE_NAME.search(text)
                self.crates[os.path.join(os.path.dirname(path), "src")] = match.group(1).replace("-", "_") if match else ""
        for path in layout.files:
            if os.path.basename(path) in _ROOT_FILES and not self._crate_dir(path):
                self.crates.setdefault(os.path.dirname(path), "")

    def _crate_dir(self, path: str) -> str | None:
        best = None
        for directory in self.crates:
            if path.startswith(directory + os.sep) and (best is None or len(directory) > len(best)):
                best = directory
        return best

    def module_file(self, crate_dir: str, segments: list[str]) -> str | None:
        files = self.layout.files
        if not segments:
            return next((os.path.join(crate_dir, n) for n in _ROOT_FILES if os.path.join(crate_dir, n) in files), None)
        stem = os.path.join(crate_dir, *segments)
        for candidate in (stem + ".rs", os.path.join(stem, "mod.rs")):
            if candidate in files:
                return candidate
        return None

    def module_path(self, crate_dir: str, path: str) -> list[str]:
        parts = os.path.relpath(path, crate_dir).split(os.sep)
        if len(parts) == 1 and parts[0] in _ROOT_FILES:
            return []
        if parts[-1] == "mod.rs":
            return parts[:-1]
        parts[-1] = parts[-1][:-3]
        return parts

    def _mod_declaration(self, path: str, imp: Import) -> Resolution:
        name = os.path.basename(path)
        directory = os.path.dirname(path)
        base = directory if name in ("mod.rs",) + _ROOT_FILES else os.path.join(directory, name[:-3])
        for candidate in (os.path.join(base, imp.spec + ".rs"), os.path.join(base, imp.spec, "mod.rs")):
            if candidate in self.layout.files:
                return Resolution((candidate,), True)
        rel = os.path.relpath(os.path.join(base, imp.spec), self.layout.root)
        return Resolution((), True, f"no file {rel}.rs or {rel}/mod.rs")

    def resolve(self, path: str, imp: Import) -> Resolution:
        if imp.kind == "mod":
            return self._mod_declaration(path, imp)
        crate_dir = self._crate_dir(path)
        if crate_dir is None:
            return EXTERNAL
        here = self.module_path(crate_dir, path)
        segments = imp.spec.split("::")
        first = segments[0]
        if first == "crate" or (first and first == self.crates[crate_dir]):
            base, rest = [], segments[1:]
        elif first == "self":
            base, rest = here, segments[1:]
        elif first == "super":
            base, rest = here, segments
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif self.module_file(crate_dir, here + [first]):
            base, rest = here, segments
        else:
            return EXTERNAL
        for k in range(len(rest), -1, -1):
            target = self.module_file(crate_dir, base + rest[:k])
            if target is not None:
                break
        else:
            return Resolution((), True, f"no module {'::'.join(base) or 'crate root'}")
        targets = [target]
        missing = []
        if k < len(rest):
            if rest[k] not in self.layout.names_in(target):
                missing.append(rest[k])
        else:
            for imported in imp.names:
                sub = self.module_file(crate_dir, base + rest + [imported.name])
                if sub is not None:
                    targets.append(sub)
                elif imported.name not in self.layout.names_in(target):
                    missing.append(imported.name)
        detail = f"no item or module {', '.join(missing)} in {os.path.relpath(target, self.layout.root)}" if missing else ""
        return Resolution(tuple(targets), True, detail)
