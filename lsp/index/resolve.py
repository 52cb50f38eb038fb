"""Resolves imports to workspace files. A Layout describes the workspace (its files, directories and
config files); resolve() dispatches to the per-language rules in resolve_*.py.

Each resolution answers (targets, reportable): targets are workspace files the import reaches; when
there are none, reportable says whether the import looks like a workspace import (so its failure is a
diagnostic) or a third-party/stdlib one (silently external).
"""

from __future__ import annotations

import os
from collections import defaultdict
from functools import cached_property
from typing import Callable, NamedTuple

from .model import Import


class Resolution(NamedTuple):
    targets: tuple[str, ...]
    reportable: bool
    detail: str = ""

    @property
    def unresolved(self) -> bool:
        """A workspace-looking import that reaches nothing, or misses some of its names."""
        return self.reportable and (not self.targets or bool(self.detail))


EXTERNAL = Resolution((), False)


class Layout:
    """A snapshot of the workspace's file set and config files; cached facts derive from it."""

    def __init__(self, root: str, files: dict[str, str], config: dict[str, str],
                 names_in: Callable[[str], set[str]] | None = None,
                 static_names: Callable[[str], bool] | None = None):
        self.root = root
        self.files = files  # path -> language
        self.config = config  # path -> text of go.mod / tsconfig.json / jsconfig.json / Cargo.toml
        self.names_in = names_in or (lambda path: set())  # names a file defines or imports
        # whether names_in(path) is the complete list (no wildcard imports, no dynamic globals)
        self.static_names = static_names or (lambda path: False)

    @cached_property
    def by_dir(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for path in self.files:
            grouped[os.path.dirname(path)].append(path)
        for paths in grouped.values():
            paths.sort()
        return dict(grouped)

    def exists(self, path: str) -> bool:
        return path in self.files

    @cached_property
    def python(self):
        from .resolve_python import PythonLayout

        return PythonLayout(self)

    @cached_property
    def typescript(self):
        from .resolve_ts import TypeScriptLayout

        return TypeScriptLayout(self)

    @cached_property
    def go(self):
        from .resolve_go import GoLayout

        return GoLayout(self)

    @cached_property
    def rust(self):
        from .resolve_rust import RustLayout

        return RustLayout(self)


def resolve(layout: Layout, path: str, language: str, imp: Import) -> Resolution:
    """Where `imp`, found in `path`, leads inside the workspace."""
    if language == "python":
        return layout.python.resolve(path, imp)
    if language in ("typescript", "tsx", "javascript"):
        return layout.typescript.resolve(path, imp)
    if language == "go":
        return layout.go.resolve(path, imp)
    if language == "rust":
        return layout.rust.resolve(path, imp)
    return EXTERNAL
