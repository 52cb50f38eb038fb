"""Go import resolution: an import path under a go.mod's module path names a directory, and the
import reaches every non-test .go file in it. Other paths (stdlib, third-party) are external."""

from __future__ import annotations

import os
import re

from .model import Import
from .resolve import EXTERNAL, Resolution

_MODULE_LINE = re.compile(r"^\s*module\s+\"?([^\s\"]+)\"?", re.MULTILINE)


class GoLayout:
    def __init__(self, layout):
        self.layout = layout
        self.modules: list[tuple[str, str]] = []  # (module path, directory), longest path first
        for path, text in layout.config.items():
            if os.path.basename(path) == "go.mod":
                match = _MODULE_LINE.search(text)
                if match:
                    self.modules.append((match.group(1), os.path.dirname(path)))
        self.modules.sort(key=lambda item: -len(item[0]))

    def package_files(self, directory: str) -> list[str]:
        return [p for p in self.layout.by_dir.get(directory, ()) if p.endswith(".go") and not p.endswith("_test.go")]

    def resolve(self, path: str, imp: Import) -> Resolution:
        spec = imp.spec
        for module, directory in self.modules:
            if spec == module or spec.startswith(module + "/"):
                rest = spec[len(module) + 1 :]
                package_dir = os.path.join(directory, *rest.split("/")) if rest else directory
                files = self.package_files(package_dir)
                if files:
                    return Resolution(tuple(files), True)
                return Resolution((), True, f"no .go files in {os.path.relpath(package_dir, self.layout.root)}")
        return EXTERNAL
